"""Typed views of the frames the server sends (docs/protocol.md §3, §5, §6).

Each class is built from a decoded frame with `from_frame` / `from_dict`,
which read the fields the protocol names and ignore any others: the server
may add fields within protocol v1, and clients must not break on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

#: Event kinds that are entries of a conversation's change log (they carry a seq).
MESSAGE_KINDS = frozenset({"message.created", "message.edited", "message.deleted"})


@dataclass(frozen=True)
class Hello:
    """The first frame of every accepted connection."""

    protocol: int
    user_id: int
    username: str
    device_id: int
    device_name: str
    server_time: str
    heartbeat_interval: float
    heartbeat_timeout: float
    presence_timeout: float
    typing_timeout: float
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: JSON) -> Hello:
        return cls(
            protocol=frame["protocol"],
            user_id=frame["user"]["id"],
            username=frame["user"]["username"],
            device_id=frame["device"]["id"],
            device_name=frame["device"]["name"],
            server_time=frame["server_time"],
            heartbeat_interval=float(frame["heartbeat_interval"]),
            heartbeat_timeout=float(frame["heartbeat_timeout"]),
            presence_timeout=float(frame["presence_timeout"]),
            typing_timeout=float(frame["typing_timeout"]),
            limits=dict(frame.get("limits", {})),
        )


@dataclass(frozen=True)
class Message:
    """A message as events and `ok` results carry it (docs/protocol.md, Message)."""

    id: int
    conversation_id: int
    seq: int
    sender: int
    sender_device: int | None
    client_msg_id: str
    body: str
    reply_to: int | None
    version: int
    created_at: str
    edited_at: str | None
    deleted: bool
    deleted_at: str | None
    redacted: bool = False

    @classmethod
    def from_dict(cls, data: JSON) -> Message:
        return cls(
            id=data["id"],
            conversation_id=data["conversation_id"],
            seq=data["seq"],
            sender=data["sender"],
            sender_device=data.get("sender_device"),
            client_msg_id=data["client_msg_id"],
            body=data["body"],
            reply_to=data.get("reply_to"),
            version=data["version"],
            created_at=data["created_at"],
            edited_at=data.get("edited_at"),
            deleted=data["deleted"],
            deleted_at=data.get("deleted_at"),
            redacted=bool(data.get("redacted", False)),
        )


@dataclass(frozen=True)
class LogEvent:
    """An entry of a conversation's change log: conversation.*, member.*, message.*,
    and any log kind a newer server adds (`payload` is then the only content)."""

    kind: str
    conversation_id: int
    seq: int
    payload: JSON

    @classmethod
    def from_frame(cls, frame: JSON) -> LogEvent:
        return cls(frame["kind"], frame["conversation_id"], frame["seq"], frame.get("payload", {}))

    @property
    def message(self) -> Message | None:
        """The message, for message.created / message.edited / message.deleted."""
        return Message.from_dict(self.payload) if self.kind in MESSAGE_KINDS else None


@dataclass(frozen=True)
class Receipt:
    user_id: int
    delivered_seq: int
    read_seq: int


@dataclass(frozen=True)
class ReceiptsUpdated:
    conversation_id: int
    receipts: tuple[Receipt, ...]

    @classmethod
    def from_frame(cls, frame: JSON) -> ReceiptsUpdated:
        receipts = frame["payload"]["receipts"]
        return cls(
            frame["conversation_id"],
            tuple(Receipt(r["user_id"], r["delivered_seq"], r["read_seq"]) for r in receipts),
        )


@dataclass(frozen=True)
class Presence:
    user_id: int
    status: str
    last_seen_at: str | None

    @classmethod
    def from_dict(cls, data: JSON) -> Presence:
        return cls(data["user_id"], data["status"], data.get("last_seen_at"))


@dataclass(frozen=True)
class Typing:
    conversation_id: int
    user_id: int
    device_id: int
    state: str
    expires_in: float | None

    @classmethod
    def from_frame(cls, frame: JSON) -> Typing:
        p = frame["payload"]
        return cls(frame["conversation_id"], p["user_id"], p["device_id"], p["state"], p.get("expires_in"))


@dataclass(frozen=True)
class Reset:
    """The conversation must be reloaded over REST; its cursor is now `last_seq`."""

    conversation_id: int
    last_seq: int
    reason: str

    @classmethod
    def from_frame(cls, frame: JSON) -> Reset:
        return cls(frame["conversation_id"], frame["last_seq"], frame.get("reason", ""))


@dataclass(frozen=True)
class SyncResult:
    cursors: dict[int, int]
    reset: tuple[int, ...]
    gone: tuple[int, ...]

    @classmethod
    def from_result(cls, result: JSON) -> SyncResult:
        return cls(
            {int(k): v for k, v in result.get("cursors", {}).items()},
            tuple(result.get("reset", ())),
            tuple(result.get("gone", ())),
        )


@dataclass(frozen=True)
class SendResult:
    conversation_id: int
    message_id: int
    seq: int
    client_msg_id: str
    duplicate: bool

    @classmethod
    def from_result(cls, result: JSON) -> SendResult:
        return cls(
            result["conversation_id"],
            result["message_id"],
            result["seq"],
            result["client_msg_id"],
            result["duplicate"],
        )


@dataclass(frozen=True)
class ReceiptCursors:
    """The user's cursors in a conversation after a `read` or `delivered`."""

    conversation_id: int
    delivered_seq: int
    read_seq: int

    @classmethod
    def from_result(cls, result: JSON) -> ReceiptCursors:
        return cls(result["conversation_id"], result["delivered_seq"], result["read_seq"])


@dataclass(frozen=True)
class FetchResult:
    conversation_id: int
    changes: tuple[LogEvent, ...]
    has_more: bool

    @classmethod
    def from_result(cls, result: JSON) -> FetchResult:
        return cls(
            result["conversation_id"],
            tuple(LogEvent.from_frame(c) for c in result["changes"]),
            result["has_more"],
        )
