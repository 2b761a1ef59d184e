"""One conversation's stream to one device: in seq order, no gap, no duplicate.

Live events are a doorbell, not the truth: the channel layer may drop or delay
one, and a device may subscribe a moment after a change committed. So the
stream keeps the device's cursor (the last seq sent) and:
  * an event at cursor + 1 is sent at once;
  * an event at or below the cursor was already sent and is dropped;
  * an event past cursor + 1 reveals a gap: it is held. Usually the missing
    event is just behind it (two senders' commits published from different
    threads can reach the layer in swapped order), so the stream waits a
    moment for it; if it does not come, a refill reads the missing changes
    from the log, sends them, then releases what was held. Reading the log at
    once on every swap would send every device of a busy conversation to the
    database at the same moment.
Seqs of a conversation commit in order, so once an event for seq N arrived,
the log holds every seq below N.
"""

import asyncio
import logging

from django.conf import settings

from conversations.models import Change
from observability import metrics

from . import frames
from .log_reads import load_changes

logger = logging.getLogger(__name__)

REFILL_BATCH = 200
MAX_EMPTY_REFILLS = 3


class ConversationStream:
    def __init__(self, connection, conversation_id: int, cursor: int, *, until: int | None = None):
        self.connection = connection
        self.conversation_id = conversation_id
        self.cursor = cursor
        self.until = until  # last seq this device may see (the removal of its user)
        self.ended = False
        # Off until the connection has subscribed to the conversation's group; events
        # arriving before that are held, and the first refill reads the log after it.
        self.live = False
        self._held: dict[int, tuple[str, str, dict]] = {}
        self._refill: asyncio.Task | None = None
        self._gap_timer: asyncio.TimerHandle | None = None
        # A live event arrived since the last reconciliation (which clears it).
        self.heard_live = False
        # How far the log is known to go, when a refill was asked for with it:
        # lets streams of a conversation at the same cursor share one read.
        self._known_through: int | None = None

    async def offer(self, seq: int, text: str, kind: str, meta: dict) -> None:
        """A live event for this conversation."""
        if self.ended:
            return
        self.heard_live = True
        if seq <= self.cursor:
            metrics.DUPLICATES.inc()
            return
        if self.live and self._refill is None and seq == self.cursor + 1:
            await self._emit(seq, text, kind, meta)
            if self._held:  # the usual live event finds none: no coroutine to run per delivery
                await self._release_held()
            if not self._held:
                self._cancel_gap_timer()
            return
        if seq > self.cursor + 1:
            metrics.OUT_OF_ORDER.inc()
        self._held[seq] = (text, kind, meta)
        if self.live and self._refill is None and self._gap_timer is None:
            self._gap_timer = asyncio.get_running_loop().call_later(settings.WS_GAP_GRACE_SECONDS, self._gap_persists)

    def _gap_persists(self) -> None:
        self._gap_timer = None
        if self._held and not self.ended:
            self.refill("gap")

    def _cancel_gap_timer(self) -> None:
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def start(self, prefetched: list | None = None) -> asyncio.Task:
        """Go live: read the log after the cursor, then follow live events.

        `prefetched` is that first read, already made (sync reads the log of
        all its conversations in one query, after subscribing to them all)."""
        self.live = True
        self._cancel_gap_timer()
        if self._refill is None:
            self._refill = asyncio.get_running_loop().create_task(self._run_refill(prefetched, "catch_up"))
        return self._refill

    def refill(self, reason: str, known_through: int | None = None) -> asyncio.Task:
        """Read the log after the cursor (unless a refill is already running);
        `reason` (gap, reconcile, recovery) is counted. `known_through`: a seq
        the log is known to hold (the conversation's last seq, just read), so
        a read another stream made from the same cursor may serve this one."""
        if known_through is not None:
            self._known_through = max(self._known_through or 0, known_through)
        self._cancel_gap_timer()
        if self._refill is None:
            metrics.REFILLS.labels(reason).inc()
            self._refill = asyncio.get_running_loop().create_task(self._run_refill(None, "refill"))
        return self._refill

    def first_read(self) -> tuple[int, int]:
        """The range (after, up to) of the log a start reads in one go."""
        up_to = self.cursor + REFILL_BATCH
        return self.cursor, up_to if self.until is None else min(up_to, self.until)

    async def wait(self) -> None:
        """Until the running refill (if any) is over, however it ends."""
        if self._refill is not None:
            await asyncio.wait([self._refill])

    def stop(self) -> None:
        self.ended = True
        self._cancel_gap_timer()
        # A refill that reaches the removal stops its own stream: it just returns.
        if self._refill is not None and self._refill is not asyncio.current_task():
            self._refill.cancel()

    async def _emit(self, seq: int, text: str, kind: str, meta: dict) -> None:
        self.cursor = seq
        await self.connection.send_text(text, committed_at=meta.get("committed_at"))  # live events carry it
        removed_me = kind == Change.Kind.MEMBER_REMOVED and meta.get("user_id") == self.connection.user_id
        if removed_me or (self.until is not None and seq >= self.until):
            self.connection.untrack(self.conversation_id)

    async def _run_refill(self, prefetched: list | None, reason: str) -> None:
        empty_reads = 0
        from_log = metrics.LOG_CHANGES_SENT.labels(reason)
        try:
            while not self.ended:
                if prefetched is not None:
                    changes, prefetched = prefetched, None
                else:
                    # Held events (or the refill's caller) tell how far the log goes: a read
                    # another stream of the conversation made a moment ago may serve if it
                    # reaches that far.
                    changes = await load_changes(
                        self.conversation_id,
                        self.cursor,
                        until=self.until,
                        limit=REFILL_BATCH,
                        needed_through=min(self._held) - 1 if self._held else self._known_through,
                    )
                with self.connection.sending_together():
                    for change in changes:
                        if self.ended:
                            return
                        if change.seq <= self.cursor:
                            continue
                        if change.seq > self.cursor + 1:
                            await self._reset_at(change.seq - 1)
                        await self._emit(change.seq, change.text, change.kind, change.meta)
                        from_log.inc()
                    await self._release_held()
                if not self._held and len(changes) < REFILL_BATCH:
                    return
                empty_reads = 0 if changes else empty_reads + 1
                if empty_reads >= MAX_EMPTY_REFILLS:
                    await self._reset_at(max(self._held))
                    await self._release_held()
                    return
        except Exception:
            # The device keeps its cursor; the next event or sync refills again.
            logger.exception(
                "refilling conversation %s for device %s failed", self.conversation_id, self.connection.device_id
            )
        finally:
            self._refill = None
            self._known_through = None

    async def _release_held(self) -> None:
        for seq in [s for s in self._held if s <= self.cursor]:
            del self._held[seq]
        while not self.ended and self.cursor + 1 in self._held:
            seq = self.cursor + 1
            await self._emit(seq, *self._held.pop(seq))

    async def _reset_at(self, seq: int) -> None:
        """The log lacks seqs up to `seq` (it was altered by hand): tell the device
        to reload the conversation, and go on from there."""
        logger.warning(
            "conversation %s: log has a hole before seq %s; resetting device %s",
            self.conversation_id,
            seq + 1,
            self.connection.device_id,
        )
        self.cursor = seq
        metrics.RESETS.labels("log_gap").inc()
        await self.connection.send_text(frames.reset(self.conversation_id, seq, "log_gap"))
