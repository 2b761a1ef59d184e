"""The event envelope and the channel-layer groups events travel through.

An event is serialized to JSON once, when it is published; every connection that
receives it forwards the same text. Conversation events carry (conversation_id,
seq) so a device can tell a gap and ask for it.
"""

import json
from dataclasses import dataclass, field, replace
from functools import cached_property

from django.core.serializers.json import DjangoJSONEncoder

# The type of the channel-layer messages that carry events. Only the gateway's hub
# reads the layer (gateway/hub.py), so no consumer method is named after it.
LAYER_MESSAGE_TYPE = "realtime.event"


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


def presence_group(user_id: int) -> str:
    """The connections that asked for a user's presence (`presence.subscribe`)."""
    return f"presence.{user_id}"


# The `kind` of a layer message that carries several events for one group.
BATCH_KIND = "batch"


def batch_layer_message(group: str, events: list["Event"]) -> dict:
    """One channel-layer message carrying several events for one group: a burst
    costs the layer (and each process's hub) one message, not one per event."""
    return {
        "type": LAYER_MESSAGE_TYPE,
        "group": group,
        "kind": BATCH_KIND,
        "events": [event.layer_message(group) for event in events],
    }


def dumps(data) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def event_text(kind: str, conversation_id: int, seq: int, payload_json: str) -> str:
    """A log event's frame text, as `Event.text()` writes it, around a payload
    already encoded (as the database keeps it), without decoding it again."""
    return f'{{"type":"event","kind":{dumps(kind)},"conversation_id":{int(conversation_id)},"seq":{int(seq)},"payload":{payload_json}}}'


@dataclass(frozen=True)
class Event:
    kind: str
    payload: dict
    conversation_id: int | None = None
    seq: int | None = None
    # Extra routing facts the gateway may need (e.g. the user a member event is about).
    meta: dict = field(default_factory=dict)

    def frame(self) -> dict:
        frame = {"type": "event", "kind": self.kind}
        if self.conversation_id is not None:
            frame["conversation_id"] = self.conversation_id
        if self.seq is not None:
            frame["seq"] = self.seq
        frame["payload"] = self.payload
        return frame

    def at_commit(self, committed_at: float) -> "Event":
        """This event stamped with when its change committed (time.time(), in
        meta `committed_at`): the gateway measures delivery latency from it."""
        return replace(self, meta={**self.meta, "committed_at": committed_at})

    def text(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        """Encoded once per event, however many groups and batches carry it."""
        return dumps(self.frame())

    def layer_message(self, group: str, text: str | None = None) -> dict:
        """The channel-layer message for one group; pass `text` to reuse one encoding."""
        return {
            "type": LAYER_MESSAGE_TYPE,
            "group": group,
            "kind": self.kind,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "meta": self.meta,
            "text": text if text is not None else self.text(),
        }
