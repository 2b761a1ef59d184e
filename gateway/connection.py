"""One device's connection: the conversations it follows and what it receives.

The hub hands every event for the connection's groups to `deliver`. Events of
a conversation's log go through that conversation's stream (ordered, gapless,
exactly once); state events of a conversation (receipts) go out only while the
device follows it; others (a revoked device) act on the connection.

Until the device's first `sync`, the connection does not know where the device
is in each conversation, so log events are held and replayed after the sync.
"""

import logging
import time

from django.conf import settings

from conversations.models import Change
from core.events import BATCH_KIND, conversation_group, presence_group, user_group
from observability import logs, metrics
from presence.services import new_connection_id

from . import close_codes, transport
from .inbox import Inbox
from .recent_ids import RecentIds
from .stream import ConversationStream
from .typing import Typing

logger = logging.getLogger(__name__)

PRESENCE_GROUP_PREFIX = presence_group(0).removesuffix("0")

# Log events that bring a conversation to a user who is not following it yet.
JOINING_KINDS = {Change.Kind.CONVERSATION_CREATED, Change.Kind.MEMBER_ADDED}


class DeviceConnection:
    def __init__(self, consumer, hub, device, outbound: transport.Outbound | None = None):
        self.consumer = consumer
        self.outbound = transport.Outbound(transport.protocol_of(consumer)) if outbound is None else outbound
        self.transport = self.outbound.transport
        self.hub = hub
        self.device_id = device.pk
        self.user_id = device.user_id
        self.device = device
        # Names this connection in presence, which a newer connection of the device takes over.
        self.connection_id = new_connection_id()
        logs.bind(connection_id=self.connection_id, device_id=self.device_id, user_id=self.user_id)
        self.typing = Typing(self)
        self.groups: set[str] = set()
        self.streams: dict[int, ConversationStream] = {}
        self.synced = False
        self.closed = False
        self.in_flight = 0
        self.last_received = time.monotonic()
        self._held: list[dict] = []
        self._delivered_ids = RecentIds()
        self.inbox = Inbox(self, hub.user_buckets.attach(self.user_id))
        self.dropped_frames = 0  # state events not sent because the client was not reading
        self._max_outbound_bytes = settings.WS_MAX_OUTBOUND_BYTES  # read once: send_text runs per delivery

    def __repr__(self) -> str:
        return f"<DeviceConnection device={self.device_id} user={self.user_id}>"

    async def send_text(self, text: str, *, droppable: bool = False, committed_at: float | None = None) -> None:
        """Send a frame, unless the client has stopped reading (`committed_at`:
        a live change's commit time, for the delivery latency).

        Past half of WS_MAX_OUTBOUND_BYTES unread, `droppable` frames (typing,
        presence, receipts: state the next update or a snapshot brings back)
        are dropped; past all of it, anything else closes the connection with
        4429 instead of being queued without bound: the device reconnects and
        syncs, and the log gives it what it missed."""
        if self.closed:
            return
        queued = transport.queued_bytes(self.transport)
        if queued > self._max_outbound_bytes // 2 and droppable:
            self.dropped_frames += 1
            metrics.FRAMES_DROPPED.inc()
            return
        if queued > self._max_outbound_bytes:
            logger.warning("device %s is not reading (%d bytes queued); closing", self.device_id, queued)
            await self.close(close_codes.TOO_FAR_BEHIND, "too slow; reconnect and sync")
            transport.abort(self.transport)
            return
        written = self.outbound.send(text)
        if not written:
            await self.consumer.send(text_data=text)
        metrics.frame_out(text, written, committed_at)

    def sending_together(self):
        """A context in which the frames sent go out in one write at its end
        (transport.Outbound.corked): a catch-up's batch, a batch of live events."""
        return self.outbound.corked()

    def mark_closed(self) -> None:
        """Send nothing more: every stream stops where it is, queued requests are dropped."""
        self.closed = True
        self.inbox.discard()
        for stream in self.streams.values():
            stream.stop()

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.mark_closed()
        await self.consumer.close(code=code, reason=reason)

    # Following conversations

    async def track(
        self, conversation_id: int, cursor: int, *, until: int | None = None, start: bool = True
    ) -> ConversationStream:
        """Follow a conversation from `cursor`: subscribe first, then read the log,
        so a change committed in between is read rather than missed. With
        start=False the caller starts the stream (after its own read of the log)."""
        old = self.streams.pop(conversation_id, None)
        if old is not None:
            old.stop()
        stream = self.streams[conversation_id] = ConversationStream(self, conversation_id, cursor, until=until)
        if until is None:
            await self.hub.subscribe(conversation_group(conversation_id), self)
        if start:
            stream.start()
        return stream

    def untrack(self, conversation_id: int) -> None:
        stream = self.streams.pop(conversation_id, None)
        if stream is not None:
            stream.stop()
        self.hub.unsubscribe(conversation_group(conversation_id), self)

    # Following users' presence

    async def follow_presence(self, user_ids) -> None:
        """Receive the presence of exactly these users from now on (`presence.subscribe`)."""
        wanted = {presence_group(user_id) for user_id in user_ids}
        followed = {group for group in self.groups if group.startswith(PRESENCE_GROUP_PREFIX)}
        for group in followed - wanted:
            self.hub.unsubscribe(group, self)
        for group in sorted(wanted - followed):
            await self.hub.subscribe(group, self)

    # Events from the hub

    async def deliver(self, message: dict) -> None:
        if self.closed:
            return
        kind = message["kind"]
        if kind == BATCH_KIND:
            with self.sending_together():
                for event in message["events"]:
                    await self.deliver(event)
            return
        if kind in ("device.revoked", "user.deactivated"):
            await self.close(close_codes.DEVICE_REVOKED, kind.replace(".", " "))
            return
        conversation_id, seq = message.get("conversation_id"), message.get("seq")
        if kind == "typing" and (message.get("meta") or {}).get("user_id") == self.user_id:
            return  # your own typing is not news to your other devices
        if conversation_id is None:
            if not self._first_time(message):
                return
            await self.send_text(message["text"], droppable=True)
        elif seq is None:
            if conversation_id in self.streams:
                await self.send_text(message["text"], droppable=True)
        elif not self.synced:
            self._hold(message)
        elif (stream := self.streams.get(conversation_id)) is not None:
            # A followed conversation, the usual case: straight to its stream (per delivery, one coroutine less).
            await stream.offer(seq, message["text"], kind, message.get("meta") or {})
        else:
            await self._offer(message)

    async def _offer(self, message: dict) -> None:
        conversation_id, seq, kind = message["conversation_id"], message["seq"], message["kind"]
        stream = self.streams.get(conversation_id)
        if stream is None:
            if kind not in JOINING_KINDS or message.get("group") != user_group(self.user_id):
                return
            stream = await self.track(conversation_id, seq - 1)
        await stream.offer(seq, message["text"], kind, message.get("meta") or {})

    def _first_time(self, message: dict) -> bool:
        """False for an event sent to several of this connection's groups that it
        has already delivered (presence goes to every conversation of the user)."""
        event_id = (message.get("meta") or {}).get("event_id")
        if event_id is None:
            return True
        return self._delivered_ids.first_time(event_id)

    def _hold(self, message: dict) -> None:
        if len(self._held) >= settings.WS_MAX_HELD_EVENTS:
            self.hub.spawn(self.close(close_codes.TOO_FAR_BEHIND, "send sync after hello"))
            return
        self._held.append(message)

    async def release_held(self) -> None:
        """After the first sync: replay what arrived before it, in arrival order."""
        self.synced = True
        held, self._held = self._held, []
        for message in held:
            await self._offer(message)
