"""Reads of the change log, shared by every connection of the process.

The devices of one conversation on one process ask for the same changes at
the same moment: a late or swapped live event opens the same gap in all of
their streams at once, and after a network blip the members of a room come
back with the same cursor. Read one by one, that is one query, one set of
model instances and one JSON encoding per device: at 50 messages/s into 100
devices, the gap refills of a single swap were a fifth of the process's time.
So a read is shared: the same read already running, or made within the last
REUSE_SECONDS, serves the others, frames already encoded.

The log only grows, so an earlier read of a range may lack what committed
since. A result is therefore reused only by a reader that says how far it
knows the log goes (`needed_through`: the seq before the event a stream is
holding, the last seq a sync's plan read) and only when the result reaches
that far (or was cut at its limit); anyone else reads for themselves. A
sync's range read serves another sync only if it began after that one had
subscribed, or after the layer began routing the conversation here (and it
reaches what was dispatched here by then): a change committed between the
other's plan and its subscription, and dispatched before it, reaches it
only through a read. A
delete redacts earlier bodies in place: a read made moments before one can be
served up to REUSE_SECONDS after it, and its device then gets the delete too.
"""

import asyncio
import json
import time
import weakref
from typing import NamedTuple

from conversations.changelog import about_a_member, event_meta
from conversations.selectors import LogRow, changes_between, changes_in_ranges
from core.db import on_db_pool
from core.events import event_text
from observability import metrics

REUSE_SECONDS = 2.0
MAX_KEPT_READS = 5000


class LoggedChange(NamedTuple):
    """One change of the log as a stream sends it: the frame is encoded once."""

    conversation_id: int
    seq: int
    kind: str
    text: str
    meta: dict


def logged(row: LogRow) -> LoggedChange:
    """The row's frame, its payload put in as the database gave it; decoded only
    for a member change, whose user the stream needs to know."""
    text = event_text(row.kind, row.conversation_id, row.seq, row.payload_json)
    meta = event_meta(row.kind, json.loads(row.payload_json)) if about_a_member(row.kind) else {}
    return LoggedChange(row.conversation_id, row.seq, row.kind, text, meta)


@on_db_pool
def _read_between(conversation_id, after, until, limit) -> list[LoggedChange]:
    metrics.LOG_READS.inc()
    return [logged(c) for c in changes_between(conversation_id, after, until=until, limit=limit)]


@on_db_pool
def _read_ranges(ranges: dict[int, tuple[int, int]]) -> dict[int, list[LoggedChange]]:
    metrics.LOG_READS.inc()
    return {cid: [logged(c) for c in found] for cid, found in changes_in_ranges(ranges).items()}


def reaches(changes: list[LoggedChange], after: int, limit: int, needed_through: int | None) -> bool:
    """Whether a read of up to `limit` changes after `after` holds everything up
    to `needed_through` (it does when it was cut at its limit)."""
    if needed_through is None:
        return False
    return len(changes) >= limit or (changes[-1].seq if changes else after) >= needed_through


class Running(NamedTuple):
    """A read in progress: its result, and when it started (time.monotonic)."""

    future: asyncio.Future
    started_at: float


class Kept(NamedTuple):
    """A read made moments ago: its changes, when it started and until when it is kept."""

    changes: list[LoggedChange]
    started_at: float
    until: float


class SharedReads:
    def __init__(self):
        self._kept: dict[tuple, Kept] = {}
        self._running: dict[tuple, Running] = {}

    async def between(
        self, conversation_id: int, after: int, *, until: int | None, limit: int, needed_through: int | None = None
    ) -> list[LoggedChange]:
        """Up to `limit` changes after `after` (and up to `until`), ascending."""
        key = ("between", conversation_id, after, until, limit)
        if needed_through is not None:
            kept = self._fresh(key)
            if kept is not None and reaches(kept.changes, after, limit, needed_through):
                return kept.changes
            running = self._running.get(key)
            if running is not None:
                try:
                    found = await asyncio.shield(running.future)
                except asyncio.CancelledError:
                    if not running.future.cancelled() or asyncio.current_task().cancelling():
                        raise
                    found = None  # the stream that was reading stopped
                if found is not None and reaches(found, after, limit, needed_through):
                    return found
        started_at = time.monotonic()
        read = _read_between(conversation_id, after, until, limit)
        if key in self._running:  # a read that could not serve this one: read alone
            found = await read
            self._keep(key, found, started_at)
            return found
        return await self._lead(key, read, started_at)

    async def _lead(self, key, read, started_at: float) -> list[LoggedChange]:
        """Make a read others of the same key can wait for."""
        future = asyncio.get_running_loop().create_future()
        self._running[key] = Running(future, started_at)
        try:
            found = await read
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # marked retrieved: the waiters, if any, raise it too
            raise
        finally:
            del self._running[key]
        future.set_result(found)
        self._keep(key, found, started_at)
        return found

    async def ranges(
        self,
        ranges: dict[int, tuple[int, int]],
        needed_through: dict[int, int],
        *,
        subscribed_at: float,
        routed_since: dict[int, float | None],
    ) -> dict[int, list[LoggedChange]]:
        """For each conversation id -> (after, up_to): its changes in that range,
        ascending. A range read moments ago that reaches `needed_through[id]`
        is reused, and so is one being read now (devices of a conversation
        coming back together ask for the same range at the same moment); the
        rest is one query.

        A change that committed after the reader's plan and was dispatched
        before its subscription is in no earlier read and never reaches it
        live. So a read serves it only if it began once the reader was
        subscribed (`subscribed_at`, time.monotonic), or once the layer routed
        the conversation here without a break (`routed_since[id]`, see
        Hub.read_floor) and it reaches the last seq dispatched here by the
        subscription (which the caller puts in `needed_through`)."""
        found: dict[int, list[LoggedChange]] = {}
        missing: dict[int, tuple[int, int]] = {}
        running: dict[int, asyncio.Future] = {}
        for conversation_id, (after, up_to) in ranges.items():
            key = ("range", conversation_id, after, up_to)
            kept = self._fresh(key)
            needed = min(up_to, needed_through.get(conversation_id, up_to))
            in_progress = self._running.get(key)
            since = routed_since.get(conversation_id)
            earliest = subscribed_at if since is None else min(subscribed_at, since)
            if kept is not None and kept.started_at >= earliest and reaches(kept.changes, after, up_to - after, needed):
                found[conversation_id] = kept.changes
            elif in_progress is not None and in_progress.started_at >= subscribed_at:
                # Complete whenever it ends: it started after this reader's plan
                # saw its last seq committed, and the log is gapless.
                running[conversation_id] = in_progress.future
            else:
                missing[conversation_id] = (after, up_to)
        if missing:
            found.update(await self._lead_ranges(missing))
        for conversation_id, future in running.items():
            try:
                found[conversation_id] = await asyncio.shield(future)
            except asyncio.CancelledError:
                if not future.cancelled() or asyncio.current_task().cancelling():
                    raise
                # The sync that was reading it stopped: read it here.
                found.update(await self._lead_ranges({conversation_id: ranges[conversation_id]}))
        return found

    async def _lead_ranges(self, ranges: dict[int, tuple[int, int]]) -> dict[int, list[LoggedChange]]:
        """One query for these ranges, which other readers of the same ranges wait for."""
        loop = asyncio.get_running_loop()
        started_at = time.monotonic()
        keys = {cid: ("range", cid, after, up_to) for cid, (after, up_to) in ranges.items()}
        futures = {cid: loop.create_future() for cid, key in keys.items() if key not in self._running}
        for cid, future in futures.items():
            self._running[keys[cid]] = Running(future, started_at)
        try:
            read = await _read_ranges(ranges)
        except asyncio.CancelledError:
            for future in futures.values():
                future.cancel()
            raise
        except Exception as error:
            for future in futures.values():
                future.set_exception(error)
                future.exception()  # marked retrieved: the waiters, if any, raise it too
            raise
        finally:
            for cid in futures:
                del self._running[keys[cid]]
        found = {}
        for cid, key in keys.items():
            found[cid] = changes = read.get(cid, [])
            self._keep(key, changes, started_at)
            if cid in futures:
                futures[cid].set_result(changes)
        return found

    def _fresh(self, key) -> Kept | None:
        """The read of `key` made within the last REUSE_SECONDS, if any."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.until < time.monotonic():
            del self._kept[key]
            return None
        return kept

    def _keep(self, key, changes: list[LoggedChange], started_at: float) -> None:
        now = time.monotonic()
        if len(self._kept) >= MAX_KEPT_READS:
            self._kept = {k: v for k, v in self._kept.items() if v.until >= now}
            if len(self._kept) >= MAX_KEPT_READS:
                self._kept.clear()
        self._kept[key] = Kept(changes, started_at, now + REUSE_SECONDS)


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedReads]" = weakref.WeakKeyDictionary()


def shared_reads() -> SharedReads:
    """The running event loop's (one per server process)."""
    loop = asyncio.get_running_loop()
    reads = _per_loop.get(loop)
    if reads is None:
        reads = _per_loop[loop] = SharedReads()
    return reads


async def load_changes(
    conversation_id: int, after: int, *, until: int | None = None, limit: int, needed_through: int | None = None
):
    return await shared_reads().between(conversation_id, after, until=until, limit=limit, needed_through=needed_through)


async def load_ranges(
    ranges: dict[int, tuple[int, int]],
    needed_through: dict[int, int],
    *,
    subscribed_at: float,
    routed_since: dict[int, float | None],
):
    return await shared_reads().ranges(ranges, needed_through, subscribed_at=subscribed_at, routed_since=routed_since)
