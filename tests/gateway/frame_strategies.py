"""Hypothesis strategies for client frames, built from docs/protocol.md, and
the protocol's own account of how each frame must be answered.

Three families of frames:

* `valid_requests(world)`: every request type (§5) in its documented shape,
  with real ids from a small fixture (`World`), a valid `ref` or none, and
  perhaps unknown fields (which the server must ignore).
* `mutated_frames(world)`: a valid frame, then one or two mutations: a field
  removed, a value of the wrong JSON type, huge and negative integers (also
  integers of thousands of digits written as raw JSON text), strings with NUL
  or lone surrogates (written as raw `\\ud800` escapes), a wrong `type`, a bad
  `ref`, deep nesting, non-object JSON, invalid JSON, oversize frames.
* `random_frames()`: arbitrary text, arbitrary JSON, binary frames, and
  objects with a known `type` and random fields of any name and value.

`expectation(data)` reads a frame the way §4 and §14 describe, independently
of the server's code, and says which reply the protocol allows: the `ref` to
echo and the reply types or error codes.
"""

import itertools
import json
import re
from dataclasses import dataclass

from hypothesis import strategies as st

# ---------------------------------------------------------------------------
# The protocol's tables (docs/protocol.md)

MAX_FRAME_BYTES = 65536  # §16, the default (the fuzzing server keeps it)
MAX_BIGINT = 2**63 - 1  # §4: ids and seqs are at most 2^63 - 1
BODY_MAX_CHARS = 4000
CLIENT_MSG_ID_MAX_CHARS = 64
REF_MAX_CHARS = 64

# §5: each request type, its fields, and the fields an `invalid` error may name.
REQUEST_FIELDS = {
    "ping": (),
    "sync": ("cursors",),
    "fetch": ("conversation_id", "after_seq", "limit"),
    "send": ("conversation_id", "client_msg_id", "body", "reply_to"),
    "edit": ("conversation_id", "message_id", "body", "version"),
    "delete": ("conversation_id", "message_id"),
    "read": ("conversation_id", "seq"),
    "delivered": ("conversation_id", "seq"),
    "presence": ("status",),
    "presence.subscribe": ("user_ids",),
    "typing": ("conversation_id", "state"),
}
INVALID_FIELDS = {
    "ping": (),
    "sync": ("cursors",),
    "fetch": ("conversation_id", "after_seq", "limit"),
    "send": ("conversation_id", "client_msg_id", "body", "reply_to"),
    "edit": ("conversation_id", "body", "version"),  # a bad message_id is not_found
    "delete": ("conversation_id",),
    "read": ("conversation_id", "seq"),
    "delivered": ("conversation_id", "seq"),
    "presence": ("status",),
    "presence.subscribe": ("user_ids",),
    "typing": ("conversation_id", "state"),
}
# The errors listed per request in §5, on top of the common ones.
REQUEST_ERRORS = {
    "ping": set(),
    "sync": {"invalid"},
    "fetch": {"invalid", "not_found"},
    "send": {"invalid", "not_found", "client_msg_id_conflict"},
    "edit": {"invalid", "not_found", "message_deleted", "forbidden", "version_conflict"},
    "delete": {"invalid", "not_found", "forbidden"},
    "read": {"invalid", "not_found"},
    "delivered": {"invalid", "not_found"},
    "presence": {"invalid"},
    "presence.subscribe": {"invalid"},
    "typing": {"invalid", "not_found"},
}
# §5, "Errors every request can get" (internal_error aside: it is what the
# properties rule out).
COMMON_ERRORS = {"unavailable", "rate_limited"}
FRAME_ERRORS = {"invalid_frame", "invalid_json", "frame_too_large", "unknown_type"}
# §14: every code the WebSocket may carry.
WEBSOCKET_ERROR_CODES = {
    *FRAME_ERRORS,
    "unavailable",
    "rate_limited",
    "too_many_connections",
    "overloaded",
    "internal_error",
    "invalid",
    "not_found",
    "forbidden",
    "version_conflict",
    "message_deleted",
    "client_msg_id_conflict",
    "error",
}
# Errors a well-formed request can still get: about the data, not the frame.
STATE_ERRORS = {"not_found", "forbidden", "version_conflict", "message_deleted", "client_msg_id_conflict"}
# §15: close codes the server may send on an established connection.
CLOSE_CODES = {4408, 4410, 4429, 4430, 4500, 4503}

SERVER_FRAME_TYPES = ("hello", "ok", "pong", "error", "event", "reset")
STATUSES = ("online", "away", "busy")
TYPING_STATES = ("start", "stop")

# ---------------------------------------------------------------------------
# Frames as sent


@dataclass(frozen=True)
class Raw:
    """JSON text put into a frame as it is: what json.dumps cannot write (an
    integer of thousands of digits) or what it would not (deep nesting)."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({_short(self.text)})"


def _short(text, limit=160) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} chars)"


def to_json(value, *, ascii: bool = True) -> str:
    """JSON text of `value`, with Raw parts written as they are. With `ascii`,
    every non-ASCII character is escaped, so lone surrogates and NUL travel as
    the raw escapes `\\ud800` and `\\u0000`."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=ascii)}:{to_json(v, ascii=ascii)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, ascii=ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii)


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame: text (or bytes, for a binary frame) and how it was made."""

    data: str | bytes
    how: str

    def __repr__(self) -> str:
        return f"Frame({self.how}: {_short(self.data) if isinstance(self.data, str) else repr(self.data[:80])})"


def frame_of(value, how: str, *, ascii: bool = True) -> Frame:
    text = to_json(value, ascii=ascii)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its escape can be sent
        text = to_json(value, ascii=True)
    return Frame(text, how)


# ---------------------------------------------------------------------------
# What the protocol says the reply must be


@dataclass(frozen=True)
class HugeInt:
    """An integer read from a frame, too long for int() (4,300 digits)."""

    digits: str


def _parse_int(digits: str):
    return int(digits) if len(digits) <= 4000 else HugeInt(digits)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def nesting(text: str) -> int:
    """How deeply arrays and objects nest in `text` (strings ignored)."""
    if text.count("[") + text.count("{") < 100:
        return min(text.count("[") + text.count("{"), 100)
    brackets = (1 if c in "[{" else -1 for c in _STRING.sub("", text) if c in "[]{}")
    return max(itertools.accumulate(brackets), default=0)


def is_protocol_ref(ref) -> bool:
    """§4: absent or null, a string of at most 64 characters holding no NUL nor
    lone surrogate, or an integer whose decimal form is at most 64 characters."""
    if ref is None:
        return True
    if isinstance(ref, bool):
        return False
    if isinstance(ref, int):
        return len(str(ref)) <= REF_MAX_CHARS
    if isinstance(ref, str):
        if len(ref) > REF_MAX_CHARS or "\x00" in ref:
            return False
        try:
            ref.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False  # floats, arrays, objects, integers of thousands of digits


@dataclass(frozen=True)
class Expectation:
    ref: object  # the ref the reply must carry
    replies: frozenset  # allowed reply types: "ok", "pong", "error"
    codes: frozenset  # allowed error codes
    request_type: str | None  # the request the frame is, once it decodes
    ambiguous: bool = False  # nested near the parser's limit: the ref may or may not be read


NOT_JSON = object()


def decoded(text: str):
    """The frame as §4 reads it, or NOT_JSON."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except (ValueError, RecursionError):
        return NOT_JSON


def expectation(data: str | bytes) -> Expectation:
    def error(codes, ref=None, request_type=None):
        return Expectation(ref, frozenset({"error"}), frozenset(codes), request_type)

    if isinstance(data, bytes):
        return error({"invalid_frame"})
    depth = nesting(data)
    value = NOT_JSON if depth > 200 else decoded(data)
    ref = value.get("ref") if isinstance(value, dict) else None
    echo = ref if is_protocol_ref(ref) else None
    if len(data.encode("utf-8")) > MAX_FRAME_BYTES:
        # The ref of a frame nested near the parser's limit may or may not be read.
        return Expectation(echo, frozenset({"error"}), frozenset({"frame_too_large"}), None, 200 < depth <= 1500)
    if depth > 1500:  # far past the parser's limit of about 1,000 levels
        return error({"invalid_json"})
    if depth > 200:  # near it: either answer is right
        return Expectation(None, frozenset({"ok", "pong", "error"}), frozenset(WEBSOCKET_ERROR_CODES), None, True)
    if value is NOT_JSON:
        return error({"invalid_json"})
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return error({"invalid_frame"}, echo)
    if not is_protocol_ref(ref):
        return error({"invalid_frame"})
    type_ = value["type"]
    if type_ not in REQUEST_FIELDS:
        return error({"unknown_type"}, echo)
    codes = REQUEST_ERRORS[type_] | COMMON_ERRORS
    replies = {"pong"} if type_ == "ping" else {"ok"}
    return Expectation(echo, frozenset(replies | ({"error"} if codes else set())), frozenset(codes), type_)


# ---------------------------------------------------------------------------
# Building blocks


@dataclass(frozen=True)
class World:
    """The fixture's real ids: the fuzzing user is in `conversation_id` (owner)
    with the observer; `foreign_conversation_id` is the observer's with a third
    user; messages of the fuzzing user (`own_message_id` for edits,
    `deletable_message_id` for deletes), of the observer in the shared
    conversation, and one in the foreign conversation."""

    conversation_id: int
    foreign_conversation_id: int
    own_message_id: int
    deletable_message_id: int
    others_message_id: int
    foreign_message_id: int
    user_ids: tuple


def text_chars(**kwargs):
    """Any character a string may hold: no NUL, no lone surrogate (§4)."""
    return st.characters(exclude_categories=("Cs",), exclude_characters="\x00", **kwargs)


def not_blank(max_size):
    return st.one_of(
        st.text(text_chars(), min_size=1, max_size=min(max_size, 40)),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=max_size),
    ).filter(str.strip)


bodies = st.one_of(not_blank(200), st.just("x" * BODY_MAX_CHARS), st.just("\U0001f600" * BODY_MAX_CHARS))
client_msg_ids = not_blank(CLIENT_MSG_ID_MAX_CHARS)
big_ids = st.integers(1, MAX_BIGINT)
non_negative = st.one_of(st.integers(0, 100), st.integers(0, MAX_BIGINT), st.just(MAX_BIGINT))

# Valid refs: strings and integers of up to 64 characters (§4).
valid_refs = st.one_of(
    st.text(text_chars(), max_size=REF_MAX_CHARS),
    st.integers(-(10**63) + 1, 10**64 - 1),
    st.sampled_from(["", "r" * REF_MAX_CHARS, "\U0001f600" * REF_MAX_CHARS, 0, -1, 10**64 - 1, -(10**62)]),
)


def huge_integer_texts():
    """Integers as raw JSON text: past 2^63 - 1, past what int() reads (4,300
    digits), negative too."""
    lengths = st.one_of(st.integers(19, 30), st.integers(4290, 4310), st.integers(25, 8000))
    return st.builds(
        lambda sign, first, n: Raw(sign + first + "9" * (n - 1)),
        st.sampled_from(["", "-"]),
        st.sampled_from("123456789"),
        lengths,
    )


def bad_strings():
    """Strings holding NUL or a lone surrogate (written as raw escapes)."""
    bad = st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff", "\ud83d"])
    return st.builds(lambda a, b, c: a + b + c, st.text(text_chars(), max_size=8), bad, st.text(max_size=8))


def deep(depth_strategy):
    return st.builds(
        lambda d, kind: Raw(("[" * d + "]" * d) if kind else ('{"a":' * d + "1" + "}" * d)),
        depth_strategy,
        st.booleans(),
    )


# JSON values of every type, small.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)

# Values of the wrong type, or out of range, for any field.
wrong_values = st.one_of(
    json_values,
    st.sampled_from(
        [None, True, False, 0, -1, 1.0, -0.0, 1e308, "", " ", "1", "12", [], {}, [1], {"id": 1}, MAX_BIGINT + 1]
    ),
    st.sampled_from([Raw("1.0"), Raw("1e3"), Raw("-0"), Raw("0.0"), Raw("1E400"), Raw("-1e-400")]),
    st.integers(-(2**64), -1),
    st.integers(MAX_BIGINT + 1, 10**24 - 1),
    huge_integer_texts(),
    bad_strings(),
    deep(st.integers(2, 40)),
)

bad_refs = st.one_of(
    st.sampled_from([True, False, 1.5, 1.0, -0.0, [], {}, ["r"], {"r": 1}, "r" * (REF_MAX_CHARS + 1)]),
    st.text(min_size=REF_MAX_CHARS + 1, max_size=REF_MAX_CHARS + 40),
    st.integers(65, 200).map(lambda n: Raw("1" + "0" * (n - 1))),
    huge_integer_texts().filter(lambda raw: len(raw.text) > REF_MAX_CHARS),
    st.builds(lambda a, b: a + "\ud800" + b, st.text(text_chars(), max_size=10), st.text(text_chars(), max_size=10)),
    st.floats(allow_nan=False, allow_infinity=False),
)


def unknown_fields(type_):
    known = {*REQUEST_FIELDS[type_], "type", "ref"}
    others = sorted({f for fields in REQUEST_FIELDS.values() for f in fields} - known)
    names = st.one_of(st.text(max_size=12), st.sampled_from(others) if others else st.nothing())
    values = st.one_of(json_values, huge_integer_texts(), bad_strings(), deep(st.integers(1, 50)))
    return st.dictionaries(names.filter(lambda n: n not in known), values, max_size=3)


# ---------------------------------------------------------------------------
# Valid requests


def request_bodies(world: World):
    """type -> strategy of the request's fields, in the shapes of §5."""
    conv = st.sampled_from([world.conversation_id] * 6 + [world.foreign_conversation_id])
    own_conv = st.just(world.conversation_id)
    messages = st.sampled_from(
        [world.own_message_id] * 4 + [world.others_message_id, world.deletable_message_id, world.foreign_message_id]
    )
    deletable = st.sampled_from([world.deletable_message_id, world.others_message_id, world.foreign_message_id])
    cursor_keys = st.sampled_from([world.conversation_id, world.foreign_conversation_id]) | big_ids.filter(
        lambda i: i < 10**18
    )
    return {
        "ping": st.fixed_dictionaries({}),
        "sync": st.one_of(
            st.fixed_dictionaries({}),
            st.fixed_dictionaries({"cursors": st.dictionaries(cursor_keys.map(str), non_negative, max_size=4)}),
        ),
        "fetch": st.fixed_dictionaries(
            {"conversation_id": conv}, optional={"after_seq": non_negative, "limit": non_negative}
        ),
        "send": st.fixed_dictionaries(
            {"conversation_id": conv, "client_msg_id": client_msg_ids, "body": bodies},
            optional={"reply_to": st.sampled_from([None, world.own_message_id, world.others_message_id])},
        ),
        "edit": st.fixed_dictionaries(
            {"conversation_id": own_conv, "message_id": messages, "body": bodies, "version": st.integers(1, 6)}
        ),
        "delete": st.fixed_dictionaries({"conversation_id": conv, "message_id": deletable}),
        "read": st.fixed_dictionaries({"conversation_id": conv, "seq": non_negative}),
        "delivered": st.fixed_dictionaries({"conversation_id": conv, "seq": non_negative}),
        "presence": st.fixed_dictionaries({"status": st.sampled_from(STATUSES)}),
        "presence.subscribe": st.fixed_dictionaries(
            {"user_ids": st.lists(st.sampled_from(world.user_ids) | big_ids, max_size=12)}
        ),
        "typing": st.fixed_dictionaries({"conversation_id": conv, "state": st.sampled_from(TYPING_STATES)}),
    }


class _CurrentVersion:
    def __repr__(self) -> str:
        return "CURRENT_VERSION"


# An edit's `version` for the caller to fill in with the message's version
# when the frame is sent (valid_requests(current_version=True)): most drawn
# versions are stale, and the edits that succeed should be drawn too.
CURRENT_VERSION = _CurrentVersion()


@st.composite
def valid_requests(draw, world: World, *, unknown: bool = True, current_version: bool = False):
    """(type, request dict): a request of §5 with a valid ref (or none) and,
    perhaps, unknown fields. Dict order: type, ref, fields, unknown fields."""
    type_ = draw(st.sampled_from(sorted(REQUEST_FIELDS)))
    request = {"type": type_}
    ref_choice = draw(st.sampled_from(["absent", "null", "ref", "ref", "ref"]))
    if ref_choice == "null":
        request["ref"] = None
    elif ref_choice == "ref":
        request["ref"] = draw(valid_refs)
    request.update(draw(request_bodies(world)[type_]))
    if type_ == "edit" and current_version and draw(st.booleans()):
        request["version"] = CURRENT_VERSION
    if unknown and draw(st.integers(0, 3)) == 0:
        request.update(draw(unknown_fields(type_)))
    return type_, request


# ---------------------------------------------------------------------------
# Mutations of valid requests


def _replace(request, key, value):
    return {k: (value if k == key else v) for k, v in request.items()}


@st.composite
def _mutate_object(draw, request: dict):
    """One mutation that keeps the frame a JSON object: (request, what was done)."""
    kind = draw(
        st.sampled_from(
            [
                "drop",
                "drop",
                "wrong_value",
                "wrong_value",
                "wrong_value",
                "huge_int",
                "bad_string",
                "type",
                "ref",
                "deep",
            ]
        )
    )
    fields = [k for k in request if k not in ("type", "ref")]
    if kind == "drop" and request:
        key = draw(st.sampled_from(sorted(request)))
        return {k: v for k, v in request.items() if k != key}, f"without {key}"
    if kind == "type":
        value = draw(
            st.one_of(
                st.sampled_from(sorted(REQUEST_FIELDS)),
                st.sampled_from(SERVER_FRAME_TYPES),
                st.sampled_from(["PING", "Send", " ping", "ping ", "presence.", "presence.unsubscribe", ""]),
                st.text(max_size=20),
                bad_strings(),
                wrong_values,
            )
        )
        return {"type": value, **{k: v for k, v in request.items() if k != "type"}}, f"type {value!r}"
    if kind == "ref":
        return {**request, "ref": draw(bad_refs)}, "bad ref"
    # A field of the request (for ping, which has none, a new one).
    key = draw(st.sampled_from(fields)) if fields else draw(st.sampled_from(["conversation_id", "x"]))
    if kind == "wrong_value":
        value = draw(wrong_values)
    elif kind == "huge_int":
        value = draw(huge_integer_texts())
    elif kind == "bad_string":
        value = draw(bad_strings())
        if key == "cursors":  # a key of the cursors object
            return _replace(request, key, {value: 1}), "cursors key with NUL or a lone surrogate"
    else:
        value = draw(deep(st.one_of(st.integers(1, 60), st.integers(2000, 6000))))
    if key not in request:
        request = {**request, key: None}
    return _replace(request, key, value), f"{kind} in {key}"


def _oversize(draw, text: str, valid_json: bool) -> str:
    """Grow a frame past max_frame_bytes (often by one byte), keeping it an
    object when it was one."""
    target = draw(
        st.one_of(st.integers(MAX_FRAME_BYTES - 2, MAX_FRAME_BYTES + 3), st.integers(MAX_FRAME_BYTES, 200_000))
    )
    if valid_json and text.startswith("{"):
        pad_len = max(0, target - len(text.encode("utf-8")) - len(',"pad":""'))
        padded = text[:-1] + ("," if text != "{}" else "") + '"pad":"' + "x" * pad_len + '"}'
        return padded
    return text + " " * max(0, target - len(text.encode("utf-8")))


def mutated_frames(world: World):
    return _mutated_frames(world)


@st.composite
def _mutated_frames(draw, world: World):
    type_, request = draw(valid_requests(world, unknown=False))
    how = [f"{type_}"]
    for _ in range(draw(st.integers(1, 2))):
        request, what = draw(_mutate_object(request))
        how.append(what)
    text = frame_of(request, "", ascii=draw(st.booleans())).data
    form = draw(st.sampled_from(["object"] * 6 + ["non_object", "invalid_json", "oversize"]))
    if form == "non_object":
        wrapper = draw(st.sampled_from(["[{}]", "{}, 1", '"{}"', "[{}, {}]"]))
        if wrapper == '"{}"':
            text = json.dumps(text)
        else:
            text = wrapper.replace("{}", text)
        how.append("not an object" if wrapper != "{}, 1" else "two values")
    elif form == "invalid_json":
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        junk = draw(st.sampled_from(["", "}", "{", ",", "'", "\\", '"', "\\u", "\\ud8", "tru", "nul", "]"]))
        text = text[:cut] + junk
        how.append("invalid JSON")
    elif form == "oversize":
        text = _oversize(draw, text, valid_json=True)
        how.append("oversize")
    return Frame(text, ", ".join(how))


# ---------------------------------------------------------------------------
# Random frames


@st.composite
def random_objects(draw):
    """An object with a known (or near) `type` and random fields of any name."""
    type_ = draw(st.one_of(st.sampled_from(sorted(REQUEST_FIELDS)), st.text(max_size=12)))
    names = st.one_of(
        st.sampled_from(sorted({f for fields in REQUEST_FIELDS.values() for f in fields} | {"ref"})),
        st.text(max_size=8),
    )
    fields = draw(st.dictionaries(names, json_values | wrong_values, max_size=5))
    return {"type": type_, **{k: v for k, v in fields.items() if k != "type"}}


def random_frames():
    return _random_frames()


@st.composite
def _random_frames(draw):
    form = draw(st.sampled_from(["object"] * 5 + ["json", "text", "text", "binary", "oversize"]))
    if form == "object":
        return frame_of(draw(random_objects()), "random object", ascii=draw(st.booleans()))
    if form == "json":
        return frame_of(draw(json_values), "random JSON", ascii=draw(st.booleans()))
    if form == "text":
        text = draw(
            st.one_of(st.text(max_size=60), st.text(st.sampled_from('{}[]":,0123456789-.eE tfnrul\\'), max_size=60))
        )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
        return Frame(text, "random text")
    if form == "binary":
        return Frame(draw(st.binary(max_size=100)), "binary")
    text = to_json(draw(random_objects()))
    return Frame(_oversize(draw, text, valid_json=draw(st.booleans())), "random oversize")
