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


class RateLimited(ServiceError):
    """A request past the connection's or the user's rate, or past the requests
    a connection may have waiting; `details.retry_after` says when to retry."""

    code = "rate_limited"
    default_message = "Too many requests; retry after details.retry_after seconds."


class TooManyConnections(ServiceError):
    code = "too_many_connections"
    default_message = "This user has too many connections to this server; close one first."


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
        frame = json.loads(text, parse_int=_parse_int)
    except ValueError:
        raise InvalidJson() from None
    except RecursionError:
        raise InvalidJson("The frame is nested too deeply.") from None
    if not isinstance(frame, dict):
        raise FrameError("A frame must be a JSON object.")
    if not isinstance(frame.get("type"), str):
        raise FrameError("A frame must have a string `type`.", field="type")
    ref = frame.get("ref")
    if ref is not None and not is_valid_ref(ref):
        raise FrameError("`ref` must be a string or an integer of at most 64 characters.", field="ref")
    return frame


# Integers longer than this are no id, seq, count or ref (a ref may have 64
# characters): they are kept as a TooLargeInteger, which every check refuses as
# "not an integer", naming its field, instead of letting Python's int() refuse
# the whole frame (it stops at 4,300 digits). Ids beyond a bigint are refused by
# the checks of each field.
MAX_INTEGER_DIGITS = 64


class TooLargeInteger:
    """A JSON integer too long to be anything this protocol accepts."""

    __slots__ = ("digits",)

    def __init__(self, digits: str):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer of {len(self.digits)} digits>"


def _parse_int(digits: str):
    return int(digits) if len(digits) <= MAX_INTEGER_DIGITS else TooLargeInteger(digits)


def safe_ref(text: str | None):
    """The `ref` of a frame that failed to decode, when it can be read at all."""
    try:
        ref = json.loads(text, parse_int=_parse_int).get("ref") if text else None
    except (ValueError, AttributeError, RecursionError):
        return None
    return ref if is_valid_ref(ref) else None


def is_valid_ref(ref) -> bool:
    """A `ref` is a string or an integer of at most 64 characters; a string
    holds no NUL and no lone surrogate (it is sent back as it came)."""
    if is_integer(ref):
        return len(str(ref)) <= 64
    if not isinstance(ref, str) or len(ref) > 64 or "\x00" in ref:
        return False
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def ok(ref, result: dict) -> str:
    return dumps({"type": "ok", "ref": ref, "result": result})


def pong(ref, server_time) -> str:
    return dumps({"type": "pong", "ref": ref, "server_time": server_time})


def error(ref, exc: ServiceError) -> str:
    return dumps({"type": "error", "ref": ref, **exc.as_dict()})


def reset(conversation_id: int, last_seq: int, reason: str) -> str:
    return dumps({"type": "reset", "conversation_id": conversation_id, "last_seq": last_seq, "reason": reason})
