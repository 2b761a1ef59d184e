"""The process-local fan-out hub.

A plain Channels chat gives every connection its own channel-layer channel, so
an event for a 100-member conversation becomes 100 layer messages, each woken,
decoded and re-encoded by its own consumer. Here each server process has one
hub with one layer channel: the hub joins a group (a conversation, a user, a
device) once for all its local connections that follow it, receives each event
once, and hands the already-encoded frame to those connections directly. The
process's own publishes it takes straight from core.publish (`take`), not
through the layer and back.

The hub survives an outage of the layer (Redis gone): connections keep their
sockets, subscribing only records which groups are wanted, and once the layer
answers again the hub joins every wanted group and every stream re-reads the
log, so what was published meanwhile (and lost) reaches every device anyway. Its periodic work (heartbeats, group refresh, reconciliation,
presence) is upkeep.py's; closing connections on SIGTERM is drain.py's.
"""

import asyncio
import logging
import time
from collections import deque

from channels.layers import get_channel_layer

from core import publish, server_loop
from core.events import BATCH_KIND, device_group, user_group
from observability import metrics

from . import close_codes, drain, upkeep
from .admission import Admission
from .layer_groups import LayerGroups
from .limits import UserBuckets

logger = logging.getLogger(__name__)

# How soon the hub tries the layer again after a failure, doubling up to the
# maximum: kept short so live delivery resumes within a second of Redis returning.
RETRY_INITIAL_SECONDS = 0.1
RETRY_MAX_SECONDS = 1.0


class Hub:
    _hubs: dict = {}  # one per event loop

    @classmethod
    async def running(cls) -> "Hub":
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls()
            await hub._start()
        await hub._ready.wait()
        return hub

    def __init__(self):
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.connections: set = set()
        self.draining = False
        self.layer_down = False  # the layer failed; recovery is retrying it
        self.admission = Admission()
        self.user_buckets = UserBuckets()  # per-user request limits and connection counts
        self._groups: dict[str, set] = {}  # group -> local connections following it
        # For each followed group: since when the layer has routed its messages
        # here without a break, and the highest seq dispatched for it (`read_floor`).
        self._routed_since: dict[str, float] = {}
        self._dispatched_seq: dict[str, int] = {}
        self._layer_groups: LayerGroups | None = None  # the groups the hub's channel is in
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._recovery: asyncio.Task | None = None
        self._receiver: asyncio.Task | None = None
        self._local: deque[dict] = deque()  # this process's own publishes, to dispatch (`take`)
        self._local_dispatcher: asyncio.Task | None = None

    async def _start(self) -> None:
        # The default prefix matters: channels-redis reads all of a process's channels
        # through one shared key, "specific.<process>!".
        self.channel = await self.layer.new_channel()
        self._layer_groups = LayerGroups(
            self.layer, self.channel, is_wanted=self._groups.__contains__, on_failure=self.layer_failed
        )
        server_loop.register(asyncio.get_running_loop())
        self._receiver = self.spawn(self._receive_loop())
        publish.deliver_locally(self)
        metrics.LAYER_UP.set(1)
        upkeep.start(self)
        drain.install_signal_handlers(self)
        self._ready.set()

    def receiving(self) -> bool:
        """Whether the layer receive loop runs (it outlives layer outages, retrying)."""
        return self._receiver is not None and not self._receiver.done()

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Connections and groups

    async def attach(self, connection) -> None:
        self.connections.add(connection)
        metrics.CONNECTIONS_OPEN.inc()
        await asyncio.gather(
            self.subscribe(user_group(connection.user_id), connection),
            self.subscribe(device_group(connection.device_id), connection),
        )

    def detach(self, connection) -> None:
        if connection in self.connections:
            self.user_buckets.detach(connection.user_id)
            metrics.CONNECTIONS_OPEN.dec()
        self.connections.discard(connection)
        for group in list(connection.groups):
            self.unsubscribe(group, connection)

    async def subscribe(self, group: str, connection) -> None:
        """Deliver the group's events to `connection`; returns once the layer will
        route them here, or at once while the layer is down (recovery joins the
        group later, and the streams then re-read the log)."""
        self._groups.setdefault(group, set()).add(connection)
        connection.groups.add(group)
        if not self.layer_down:
            await self._layer_groups.join(group)
            if not self.layer_down and group in self._groups:
                self._routed_since.setdefault(group, time.monotonic())

    def unsubscribe(self, group: str, connection) -> None:
        connection.groups.discard(group)
        followers = self._groups.get(group)
        if followers is None:
            return
        followers.discard(connection)
        if not followers:
            del self._groups[group]
            self._routed_since.pop(group, None)
            self._dispatched_seq.pop(group, None)
            self._layer_groups.leave(group)

    def read_floor(self, group: str) -> tuple[float | None, int]:
        """For a connection that has just subscribed to `group`: since when (if
        at all) the layer has routed the group's messages here without a break,
        and the highest seq dispatched for it so far. A read of the log that
        began after that moment and reaches that seq misses nothing the
        connection did not get live: whatever committed after the read began
        was dispatched here, before the subscription (so at or below the seq)
        or after it (so to the connection)."""
        return self._routed_since.get(group), self._dispatched_seq.get(group, 0)

    async def rejoin_all(self) -> None:
        """Join every group a local connection follows, again (channels-redis
        expires group membership, and a restarted Redis has forgotten it)."""
        await self._layer_groups.rejoin_all(list(self._groups))

    # Receiving

    async def _receive_loop(self) -> None:
        backoff = RETRY_INITIAL_SECONDS
        # The Redis layer hands over everything waiting in one round trip
        # (core.channel_layer); any other layer, one message at a time.
        receive_many = getattr(self.layer, "receive_many", None)
        while True:
            try:
                if receive_many is not None:
                    messages = await receive_many(self.channel)
                else:
                    messages = [await self.layer.receive(self.channel)]
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.layer_failed("receiving", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
                continue
            backoff = RETRY_INITIAL_SECONDS
            for message in messages:
                await self.dispatch(message)

    def follows(self, group: str) -> bool:
        """Whether a local connection follows the group."""
        return group in self._groups

    def take(self, messages: list[dict]) -> None:
        """This process's own publishes to groups it follows, handed over
        directly instead of through the layer (core.publish): dispatched in
        the order they were taken."""
        if not messages:
            return
        self._local.extend(messages)
        if self._local_dispatcher is None:
            self._local_dispatcher = self.spawn(self._dispatch_local())

    async def _dispatch_local(self) -> None:
        try:
            while self._local:
                await self.dispatch(self._local.popleft())
        finally:
            self._local_dispatcher = None

    async def dispatch(self, message: dict) -> None:
        metrics.EVENTS_DISPATCHED.inc()
        if "published_at" in message:
            metrics.PUBLISH_DISPATCH_LATENCY.observe(metrics.since(message["published_at"]))
        group = message.get("group")
        if group in self._groups:
            self._note_seq(group, message)
        for connection in list(self._groups.get(group, ())):
            try:
                await connection.deliver(message)
            except Exception:
                logger.exception("delivering %s to device %s failed", message.get("kind"), connection.device_id)
                self.spawn(connection.close(close_codes.INTERNAL_ERROR, "internal error"))

    def _note_seq(self, group: str, message: dict) -> None:
        seq = message.get("seq")
        if message.get("kind") == BATCH_KIND:
            seq = max((event.get("seq") or 0 for event in message["events"]), default=None)
        if seq is not None and seq > self._dispatched_seq.get(group, 0):
            self._dispatched_seq[group] = seq

    def layer_failed(self, doing: str, error: Exception) -> None:
        """Note a layer failure and make sure recovery is running. One line per
        outage, not a traceback per connection: the cause is the same."""
        metrics.LAYER_ERRORS.labels(doing.split()[0]).inc()
        metrics.LAYER_UP.set(0)
        self._routed_since.clear()  # messages may have been lost, the groups forgotten
        forget_receiver = getattr(self.layer, "forget_receiver", None)
        if forget_receiver is not None:  # and the registration as a receiver (core.layer_receivers)
            forget_receiver(self.channel)
        if not self.layer_down:
            logger.warning("channel layer failed while %s (%s); live delivery paused, retrying", doing, error)
        self.layer_down = True
        if self._recovery is None or self._recovery.done():
            self._recovery = self.spawn(self._recover())

    async def _recover(self) -> None:
        """Until the layer answers: join every wanted group again, then let every
        stream re-read the log for what was published while the layer was down."""
        backoff = RETRY_INITIAL_SECONDS
        while True:
            await asyncio.sleep(backoff)
            try:
                await self.rejoin_all()
                break
            except Exception:
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
        self._routed_since = dict.fromkeys(self._groups, time.monotonic())
        self.layer_down = False
        metrics.LAYER_RECOVERIES.inc()
        metrics.LAYER_UP.set(1)
        logger.warning("channel layer is back; %d groups joined, streams refilling", len(self._layer_groups.joined))
        await upkeep.refill_after_outage(self)
