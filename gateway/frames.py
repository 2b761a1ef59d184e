"""Frames: decoding requests, encoding replies and errors.

Every client request is a JSON object with a `type` and (recommended) a `ref`;
the reply (`ok`, `pong`) or `error` echoes the `ref`.
"""

import json

from django.conf import settings

from conversations.validation import is_integer
from core.errors import ServiceError
from core.events import dumps


class FrameError(ServiceError):
    code = "invalid_frame"


class InvalidJson(FrameError):
    code = "invalid_json"
    default_message = "The frame is not valid JSON."


class FrameTooLarge(FrameError):
    code = "frame_too_large"


class UnknownType(FrameError):
    code = "unknown_type"


class ShuttingDown(ServiceError):
    code = "unavailable"
    default_message = "The server is shutting down; reconnect and retry."


class Overloaded(ServiceError):
    """A new connection turned away by admission control (then closed with 4503)."""

    code = "overloaded"
    default_message = "The server is busy; reconnect after details.retry_after seconds."


class InternalError(ServiceError):
    code = "internal_error"
    default_message = "The server failed to handle this request."


def decode(text: str | None, binary: bytes | None) -> dict:
    """The request in a frame, or FrameError. `ref` is checked here so errors can echo it."""
    if text is None:
        raise FrameError("Binary frames are not supported; send JSON text frames.")
    if len(text.encode()) > settings.WS_MAX_FRAME_BYTES:
        raise FrameTooLarge(f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
    try:
        frame = json.loads(text)
    except ValueError:
        raise InvalidJson() from None
    if not isinstance(frame, dict):
        raise FrameError("A frame must be a JSON object.")
    if not isinstance(frame.get("type"), str):
        raise FrameError("A frame must have a string `type`.", field="type")
    ref = frame.get("ref")
    if ref is not None and not is_valid_ref(ref):
        raise FrameError("`ref` must be a string or an integer of at most 64 characters.", field="ref")
    return frame


def safe_ref(text: str | None):
    """The `ref` of a frame that failed to decode, when it can be read at all."""
    try:
        ref = json.loads(text).get("ref") if text else None
    except (ValueError, AttributeError):
        return None
    return ref if is_valid_ref(ref) else None


def is_valid_ref(ref) -> bool:
    """A `ref` is a string or an integer of at most 64 characters."""
    return (isinstance(ref, str) or is_integer(ref)) and len(str(ref)) <= 64


def ok(ref, result: dict) -> str:
    return dumps({"type": "ok", "ref": ref, "result": result})


def pong(ref, server_time) -> str:
    return dumps({"type": "pong", "ref": ref, "server_time": server_time})


def error(ref, exc: ServiceError) -> str:
    return dumps({"type": "error", "ref": ref, **exc.as_dict()})


def reset(conversation_id: int, last_seq: int, reason: str) -> str:
    return dumps({"type": "reset", "conversation_id": conversation_id, "last_seq": last_seq, "reason": reason})
