"""Publishing events to the channel layer, only after the write commits.

The change log is the truth and the channel layer is a doorbell: a publish that
is lost costs a device nothing but latency (it catches up from the log). A
publish for a write that rolls back would be a lie, so nothing is sent before
commit (`transaction.on_commit`). A broken channel layer is logged, never
raised into a request whose write already committed.

Each layer message carries `published_at` (wall clock, when it was handed to
the layer) and a change's event carries `committed_at` in its meta (when its
transaction committed, or its log row's created_at for the listener): the
hubs measure publish-to-dispatch and commit-to-device latencies from them
(observability/metrics.py).

A conversation's changes are handed to the layer in seq order within a process
(see publish_order.py): each waits, on the event loop, for the publish of the
change before it, and those that pile up meanwhile go in one layer message.

A server process's own publishes do not go through Redis and back to it: the
loop's hub (gateway/hub.py, registered with `deliver_locally`) takes the
messages of the groups it follows directly, in the order they are published,
and the layer sends them to every other member of the groups. With one
process, that was a fifth of its time per message: serializing the message
for its own channel, the delivery script, the hub's read and decoding.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from observability import metrics

from . import server_loop
from .events import Event, batch_layer_message
from .layer_outbox import outbox_for
from .publish_order import OnCommitHook, PublishLines

logger = logging.getLogger(__name__)


PUBLISH_TIMEOUT_SECONDS = 5


def send_now(event: Event, groups: list[str]) -> None:
    """Publish from synchronous code (an on_commit hook, a management command)."""
    loop = server_loop.get()
    if loop is not None and not server_loop.on_this_thread(loop):
        _send_on(loop, event, groups)
    else:
        async_to_sync(send_async)(event, groups)


def _send_on(loop, event: Event, groups: list[str]) -> None:
    """Publish on the gateway's loop, waiting a bounded time: a server that is
    exiting must not hang a database thread (and with it the exit) on a publish."""
    if not loop.is_running():
        logger.warning("not publishing %s: the server's event loop has stopped", event.kind)
        return
    future = asyncio.run_coroutine_threadsafe(send_async(event, groups), loop)
    try:
        future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    except Exception:
        future.cancel()
        logger.exception("publishing %s timed out or failed", event.kind)


def publish_on_commit(event: Event, groups: list[str]) -> None:
    """Send `event` to `groups` once the surrounding transaction commits; a
    conversation's change after the ones recorded before it in this process."""
    if event.conversation_id is None or event.seq is None:
        transaction.on_commit(lambda: send_now(event.at_commit(time.time()), groups))
        return
    place = conversation_lines.take_place(event.conversation_id)
    transaction.on_commit(OnCommitHook(conversation_lines, place, lambda: (event.at_commit(time.time()), groups)))


@contextmanager
def publish_in_line_after(conversation_id: int) -> Iterator[Callable[[Event, list[str]], None]]:
    """For a write whose seq is taken by a statement that also commits it (the
    send on PostgreSQL): hold a place in the conversation's line from before
    that statement (see publish_order.py), and yield `publish(event, groups)`,
    to call once the statement has succeeded. It publishes at commit: at once
    outside a transaction, else when the caller's transaction commits. Not
    called, the place is given up when the block ends."""
    with _in_line_before_statement(conversation_id, transaction.on_commit) as publish:
        yield publish


@contextmanager
def publish_in_line_after_autocommit(conversation_id: int) -> Iterator[Callable[[Event, list[str]], None]]:
    """`publish_in_line_after` for a statement run outside Django's transactions
    (on the event loop's own connections, core/loop_db.py): it has committed
    when it returns, so `publish` publishes at once."""
    with _in_line_before_statement(conversation_id, lambda hook: hook()) as publish:
        yield publish


@contextmanager
def _in_line_before_statement(conversation_id: int, at_commit: Callable[[Callable[[], None]], None]):
    place = conversation_lines.take_place(conversation_id, before_lock=True)
    called = False

    def publish(event: Event, groups: list[str]) -> None:
        nonlocal called
        called = True
        at_commit(OnCommitHook(conversation_lines, place, lambda: (event.at_commit(time.time()), groups)))

    try:
        yield publish
    finally:
        if not called:
            conversation_lines.give_up(place)


def _hand_over(item: tuple[Event, list[str]], done: Future) -> None:
    """Start publishing the next change of a conversation (called in seq order,
    under the lines' lock). On a loop, the server's (handed there from a
    database thread) or the one this runs on (a send on the loop's own
    connection), its publish waits there for the one before; elsewhere (a
    command, a test) it is published right here."""
    event, groups = item
    loop = server_loop.get()
    if loop is not None and loop.is_running() and not server_loop.on_this_thread(loop):
        try:
            loop.call_soon_threadsafe(_publish_in_turn, event, groups, done)
            return
        except RuntimeError:  # the loop closed just now: publish as without one
            pass
    if server_loop.running() is not None:  # filled on a loop (a send on its own connection): publish there
        _publish_in_turn(event, groups, done)
        return
    try:
        send_now(event, groups)
    finally:
        done.set_result(None)


conversation_lines = PublishLines(_hand_over, stale_after=PUBLISH_TIMEOUT_SECONDS, order_of=lambda item: item[0].seq)

# Per conversation, on the gateway's loop only: the changes waiting for the
# publish in flight (the key exists while one is).
_waiting: dict[int, list[tuple[Event, list[str], Future]]] = {}


def _publish_in_turn(event: Event, groups: list[str], done: Future) -> None:
    """Publish after the changes of the conversation handed over before; the
    ones that pile up behind a publish in flight go together, one layer
    message per group (a burst costs the layer and every hub one message)."""
    waiting = _waiting.get(event.conversation_id)
    if waiting is not None:
        waiting.append((event, groups, done))
        return
    _waiting[event.conversation_id] = [(event, groups, done)]
    asyncio.get_running_loop().create_task(_publish_line(event.conversation_id))


async def _publish_line(conversation_id: int) -> None:
    try:
        while batch := _waiting[conversation_id]:
            _waiting[conversation_id] = []
            await _publish_together(batch)
            for _, _, done in batch:
                done.set_result(None)
    finally:
        for _, _, done in _waiting.pop(conversation_id, ()):
            if not done.done():
                done.set_result(None)


async def _publish_together(batch: list[tuple[Event, list[str], Future]]) -> None:
    try:
        # asyncio.timeout, not wait_for: no task of its own per publish.
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            if len(batch) == 1:
                event, groups, _ = batch[0]
                await send_async(event, groups)
                return
            by_group: dict[str, list[Event]] = {}
            for event, groups, _ in batch:
                for group in groups:
                    by_group.setdefault(group, []).append(event)
            await send_batches_async(by_group)
    except TimeoutError:  # a hung layer must not hold up the conversation's next changes
        metrics.PUBLISH_ERRORS.inc()
        logger.warning("publishing %d change(s) timed out; the log has them", len(batch))


async def send_async(event: Event, groups: list[str]) -> None:
    """`send_now` for code already on the event loop. The event is encoded once."""
    text = event.text()
    await _send_to_groups([(group, event.layer_message(group, text)) for group in groups], event.kind)


async def send_batches_async(events_by_group: dict[str, list[Event]]) -> None:
    """Send each group its events in one layer message (see `batch_layer_message`)."""
    messages = [(group, batch_layer_message(group, events)) for group, events in events_by_group.items()]
    await _send_to_groups(messages, "a batch")


class LocalHub(Protocol):
    """What publishing needs of the hub of its loop (gateway.hub.Hub)."""

    channel: str

    def follows(self, group: str) -> bool: ...

    def take(self, messages: list[dict]) -> None: ...


# The hub of each server loop (see the module's docstring).
_local_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalHub]" = weakref.WeakKeyDictionary()


def deliver_locally(hub: LocalHub) -> None:
    """From now on, the running loop's publishes to groups `hub` follows are
    handed to it directly, and the layer skips its channel."""
    _local_hubs[asyncio.get_running_loop()] = hub


async def _send_to_groups(messages: list[tuple[str, dict]], what: str) -> None:
    """Through the layer's outbox where it can (core.channel_layer's
    group_send_many, with whatever other conversations are publishing; the
    loop's own hub takes its groups' messages directly), else one group_send
    each, in order."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    published_at = time.time()
    for _, message in messages:
        message["published_at"] = published_at
    try:
        if hasattr(layer, "group_send_many"):
            hub = _local_hubs.get(asyncio.get_running_loop())
            if hub is not None:
                # Taken first: the hub's devices need not wait for the round trip.
                hub.take([message for group, message in messages if hub.follows(group)])
            await outbox_for(layer, skip_channel=hub.channel if hub is not None else None).send(messages)
        else:
            for group, message in messages:
                await layer.group_send(group, message)
        metrics.EVENTS_PUBLISHED.inc(len(messages))
    except Exception as error:
        metrics.PUBLISH_ERRORS.inc()
        # The layer is down (it drops nothing silently otherwise): the log has
        # the change and devices catch up from it; typing and presence are
        # state that the next broadcast or a sync brings back. No traceback:
        # an outage would print one per event.
        logger.warning(
            "publishing %s failed (%s: %s); %d group(s) may have missed it",
            what,
            type(error).__name__,
            error,
            len(messages),
        )
