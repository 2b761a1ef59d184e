"""Stand-ins for what the gateway's streams and connections talk to: the change
log, the connection a stream sends through, the consumer and the hub."""

import asyncio
import contextlib
import json

from conversations.changelog import change_event
from conversations.models import Change
from conversations.selectors import LogRow
from core.events import Event
from gateway.limits import UserBuckets
from gateway.log_reads import LoggedChange, logged

WAIT_SECONDS = 2.0  # how long a test waits for something that should happen at once


def change(conversation_id: int, seq: int, kind: str = Change.Kind.MESSAGE_CREATED, **payload) -> Change:
    """An unsaved Change, as the log would return it."""
    return Change(conversation_id=conversation_id, seq=seq, kind=kind, payload=payload or {"body": f"message {seq}"})


def logged_change(c: Change) -> LoggedChange:
    """A change as a read of the log hands it to the streams."""
    return logged(LogRow(c.conversation_id, c.seq, c.kind, json.dumps(c.payload)))


def removal(conversation_id: int, seq: int, user_id: int) -> Change:
    return change(conversation_id, seq, Change.Kind.MEMBER_REMOVED, user={"id": user_id, "username": f"u{user_id}"})


def event_frame(c: Change) -> dict:
    """The frame a device must receive for a change (docs/protocol.md, `event`)."""
    return {"type": "event", "kind": c.kind, "conversation_id": c.conversation_id, "seq": c.seq, "payload": c.payload}


def reset_frame(conversation_id: int, last_seq: int, reason: str) -> dict:
    return {"type": "reset", "conversation_id": conversation_id, "last_seq": last_seq, "reason": reason}


class Recorder:
    """Something that is appended to and can be waited on until it holds n items."""

    def __init__(self):
        self.items: list = []
        self._changed = asyncio.Event()

    def append(self, item) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async def reached():
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), WAIT_SECONDS)


class FakeLog:
    """The change log behind `gateway.stream.load_changes`: it records each read
    and, when `gate` is set to an unset asyncio.Event, a read waits for it."""

    def __init__(self):
        self.changes: dict[int, dict[int, Change]] = {}
        self.reads: list[tuple] = []
        self.failures = 0  # the next reads that raise
        self.gate: asyncio.Event | None = None
        self.read_started = asyncio.Event()

    def add(self, *changes: Change) -> None:
        for c in changes:
            self.changes.setdefault(c.conversation_id, {})[c.seq] = c

    async def load(
        self, conversation_id: int, after: int, *, until: int | None = None, limit: int, needed_through=None
    ) -> list:
        self.reads.append((conversation_id, after, until, limit))
        self.read_started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the database went away")
        seqs = sorted(s for s in self.changes.get(conversation_id, {}) if s > after and (until is None or s <= until))
        return [logged_change(self.changes[conversation_id][s]) for s in seqs[:limit]]


class FakeStreamConnection:
    """What a ConversationStream needs of its connection."""

    def __init__(self, user_id: int = 1, device_id: int = 7):
        self.user_id = user_id
        self.device_id = device_id
        self.sent = Recorder()
        self.untracked: list[int] = []
        self.stream = None

    async def send_text(self, text: str, *, committed_at: float | None = None) -> None:
        self.sent.append(text)

    def untrack(self, conversation_id: int) -> None:
        self.untracked.append(conversation_id)
        if self.stream is not None:  # as DeviceConnection.untrack does
            self.stream.stop()

    def sending_together(self):
        return contextlib.nullcontext()


class FakeConsumer:
    def __init__(self):
        self.sent = Recorder()
        self.closes: list[tuple[int, str]] = []

    async def send(self, text_data: str) -> None:
        self.sent.append(text_data)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


class FakeHub:
    def __init__(self):
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.user_buckets = UserBuckets()
        self.draining = False

    async def subscribe(self, group: str, connection) -> None:
        self.subscribed.append(group)
        connection.groups.add(group)

    def unsubscribe(self, group: str, connection) -> None:
        self.unsubscribed.append(group)
        connection.groups.discard(group)

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.append(task)
        return task


def change_message(c: Change, group: str) -> dict:
    """The channel-layer message the hub hands to DeviceConnection.deliver for a change."""
    return change_event(c).layer_message(group)


def plain_message(kind: str, group: str, *, conversation_id=None, payload=None, meta=None) -> dict:
    """A channel-layer message for an event outside the log (presence, typing, receipts, revocation)."""
    event = Event(kind=kind, conversation_id=conversation_id, payload=payload or {}, meta=meta or {})
    return event.layer_message(group)
