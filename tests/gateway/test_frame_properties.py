"""Property-based tests of the WebSocket gateway: frames drawn from the
protocol's own frame types (valid, mutated and random, see frame_strategies.py)
are sent to a real server, one at a time, and for every frame:

* the reply is `ok` / `pong` or an error with a code the protocol lists
  (§14), never `internal_error`; which one follows the protocol's reading of
  the frame (§4, §5): invalid JSON is `invalid_json`, an oversize frame
  `frame_too_large`, an unknown type `unknown_type`, a request only the
  errors §5 lists for it (`invalid` naming one of its fields);
* the reply carries the frame's `ref` when that was a valid one, and `null`
  otherwise; every frame gets exactly one reply;
* nothing stored changes on an error, nor on a request that only reads
  (messages, edits, the change log, memberships, receipt cursors: counted
  after every frame, compared row by row around every batch that should
  have written nothing);

and after every batch a second, separate client's `ping` is answered, the
fuzzing connection still answers `ping` (unless it was closed with a close
code of §15, then a fresh one is used), and the server's log holds no
traceback.

The server is a dedicated one with request limits far above what one client
sending one frame at a time can reach, so the properties test the handlers,
not the rate limiter. Hypothesis runs derandomized (the same examples on
every run) with a bounded number of examples per property.
"""

import asyncio
import json
import threading
import time
from itertools import count

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Change, Conversation, Membership, Message, MessageEdit
from conversations.services import create_conversation, send_message
from delivery.models import ReceiptCursor

from . import frame_strategies as fs
from .harness import Closed, Device, ServerProcess

FUZZ_SERVER_ENV = {
    "WS_RATE_PER_CONNECTION": "100000",
    "WS_RATE_BURST_PER_CONNECTION": "100000",
    "WS_RATE_PER_USER": "100000",
    "WS_RATE_BURST_PER_USER": "100000",
    # Small, so syncs reset rather than replay a long log.
    "SYNC_MAX_CHANGES": "50",
}
REPLY_TIMEOUT = 15.0

PROPERTY_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# Requests that store nothing: an `ok` to them leaves the data as it was.
READ_ONLY = {"ping", "sync", "fetch", "presence", "presence.subscribe", "typing"}


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup):
    server = ServerProcess(**FUZZ_SERVER_ENV).start()
    yield server
    server.stop()


class Loop:
    """An event loop on a thread of its own, so the WebSocket connections live
    across Hypothesis examples while the test thread reads the database."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop():
    running = Loop()
    yield running
    running.stop()


@pytest.fixture
def world(transactional_db, make_user, make_device):
    """The fuzzing user (alice) owns a group with the observer (bob), holding a
    message of each; bob and carol share a conversation alice is not in."""
    from presence.models import DevicePresence, Status

    alice, bob, carol = make_user(), make_user(), make_user()
    shared, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    foreign, _ = create_conversation(creator=bob, kind="group", member_ids=[carol.pk])

    def message(user, conversation, text):
        return send_message(sender=user, conversation_id=conversation.pk, client_msg_id=text, body=text).message.pk

    world = fs.World(
        conversation_id=shared.pk,
        foreign_conversation_id=foreign.pk,
        own_message_id=message(alice, shared, "alice-1"),
        deletable_message_id=message(alice, shared, "alice-2"),
        others_message_id=message(bob, shared, "bob-1"),
        foreign_message_id=message(bob, foreign, "bob-2"),
        user_ids=(alice.pk, bob.pk, carol.pk),
    )
    yield world, make_device(alice, "fuzzer")[1], make_device(bob, "observer")[1]
    # Let the server finish with the closed connections (each writes its
    # device's presence) before the database is emptied.
    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def stored_state() -> dict:
    """What a request may store, read in full (the fixture keeps it small)."""
    return {
        "conversations": list(Conversation.objects.order_by("pk").values_list("pk", "last_seq", "title")),
        "messages": list(
            Message.objects.order_by("pk").values_list(
                "pk", "conversation_id", "seq", "client_msg_id", "body", "version", "reply_to_id", "deleted_at"
            )
        ),
        "edits": list(MessageEdit.objects.order_by("pk").values_list("pk", "message_id", "version", "body")),
        "changes": list(Change.objects.order_by("pk").values_list("pk", "conversation_id", "seq", "kind", "payload")),
        "memberships": list(
            Membership.objects.order_by("pk").values_list("pk", "conversation_id", "user_id", "role", "is_active")
        ),
        "receipt_cursors": list(
            ReceiptCursor.objects.order_by("pk").values_list(
                "pk", "user_id", "conversation_id", "delivered_seq", "read_seq"
            )
        ),
    }


def stored_counts() -> dict:
    """Counts and sums of what a request may store, in one query: cheap
    enough to take after every frame (a write adds a row, or bumps a
    version, a seq or a cursor)."""
    columns = {
        "conversations": (Conversation, ["SUM(last_seq)", "COUNT(*)"]),
        "messages": (Message, ["COUNT(*)", "SUM(version)", "COUNT(deleted_at)", "SUM(LENGTH(body))"]),
        "edits": (MessageEdit, ["COUNT(*)"]),
        "changes": (Change, ["COUNT(*)", "MAX(id)"]),
        "memberships": (Membership, ["COUNT(*)", "COUNT(CASE WHEN is_active THEN 1 END)"]),
        "receipt_cursors": (ReceiptCursor, ["COUNT(*)", "SUM(delivered_seq)", "SUM(read_seq)"]),
    }
    table = {model: connection.ops.quote_name(model._meta.db_table) for model, _ in columns.values()}
    selects = [f"(SELECT {e} FROM {table[model]})" for model, exprs in columns.values() for e in exprs]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(selects))
        row = list(cursor.fetchone())
    return {name: tuple(row.pop(0) for _ in exprs) for name, (_, exprs) in columns.items()}


def assert_log_clean(server: ServerProcess) -> None:
    output = server.output()
    for marker in ("Traceback", "Exception inside application"):
        assert marker not in output, output[output.index(marker) - 2000 : output.index(marker) + 4000]


class Session:
    """A fuzzing connection (alice) and an observer connection (bob) on the
    fuzz server, driven from the test thread."""

    _pings = count(1)

    def __init__(self, server: ServerProcess, loop: Loop, fuzzer_token: str, observer_token: str):
        self.server, self.loop = server, loop
        self.fuzzer_token = fuzzer_token
        self.fuzzer = self._connect(fuzzer_token)
        self.observer = self._connect(observer_token)
        self.stored: dict | None = None  # stored_state() when known to be current

    def _connect(self, token) -> Device:
        async def connect():
            return await Device(self.server.url, token).connect()

        return self.loop.run(connect())

    def close(self) -> None:
        for device in (self.fuzzer, self.observer):
            try:
                self.loop.run(device.close())
            except Exception:
                pass

    def exchange(self, frame: fs.Frame) -> dict | None:
        """Send one frame; its reply, or None when the connection was closed
        (with a code of §15: anything else fails) and replaced by a new one."""
        try:
            return self.loop.run(self._request(self.fuzzer, frame.data))
        except Closed as closed:
            assert closed.code in fs.CLOSE_CODES, f"{frame!r} closed the connection with {closed.code}"
            self.fuzzer = self._connect(self.fuzzer_token)
            return None
        except TimeoutError:
            raise AssertionError(f"{frame!r} got no reply in {REPLY_TIMEOUT} s") from None

    @staticmethod
    async def _request(device: Device, data: str | bytes) -> dict:
        """Send a frame (bytes as a binary frame) and wait for the next reply."""
        await device.send_raw(data)  # raises Closed when the connection has gone
        return await device.wait_for(lambda f: f["type"] in ("ok", "pong", "error"), REPLY_TIMEOUT)

    def assert_serving(self) -> None:
        """Both connections answer a ping, and its pong is the next reply: no
        frame of the batch got a second one."""

        def ping(device):
            ref = f"alive-{next(self._pings)}"
            reply = self.loop.run(self._request(device, json.dumps({"type": "ping", "ref": ref})))
            assert (reply["type"], reply["ref"]) == ("pong", ref), f"expected the pong to {ref}, got {reply}"

        ping(self.observer)
        try:
            ping(self.fuzzer)
        except Closed as closed:
            assert closed.code in fs.CLOSE_CODES, f"the fuzzing connection was closed with {closed.code}"
            self.fuzzer = self._connect(self.fuzzer_token)


def check_reply(frame: fs.Frame, reply: dict) -> fs.Expectation:
    expected = fs.expectation(frame.data)
    assert reply["type"] in expected.replies, f"{frame!r}: {reply}"
    if reply["type"] == "error":
        code = reply.get("code")
        assert code != "internal_error", f"{frame!r}: {reply}"
        assert code in fs.WEBSOCKET_ERROR_CODES, f"{frame!r}: undocumented code {reply}"
        assert code in expected.codes, f"{frame!r}: {code} where the protocol says {sorted(expected.codes)}: {reply}"
        assert isinstance(reply.get("message"), str), reply
        if code == "invalid" and expected.request_type:
            assert reply.get("field") in fs.INVALID_FIELDS[expected.request_type], f"{frame!r}: {reply}"
        if code in ("invalid_frame", "unknown_type") and "field" in reply:
            assert reply["field"] in ("type", "ref"), reply
    elif reply["type"] == "ok":
        assert isinstance(reply.get("result"), dict), reply
    else:
        assert isinstance(reply.get("server_time"), str), reply
    if not expected.ambiguous:
        assert "ref" in reply and reply["ref"] == expected.ref and type(reply["ref"]) is type(expected.ref), (
            f"{frame!r}: the reply's ref should be {expected.ref!r}: {reply}"
        )
    return expected


def allowed_changes(reply: dict, expected: fs.Expectation) -> set | None:
    """What a reply allows to have changed: nothing after an error, a
    request that only reads or a send that was a retry; receipt cursors
    after read and delivered; anything (None) after other writes."""
    request_type = expected.request_type
    retried = request_type == "send" and reply["type"] == "ok" and reply["result"].get("duplicate")
    if reply["type"] == "error" or request_type in READ_ONLY or retried:
        return set()
    if request_type in ("read", "delivered"):
        return {"receipt_cursors"}
    return None


def check_stored(frame: fs.Frame, reply: dict, allowed: set | None, before: dict, after: dict) -> None:
    if allowed is not None:
        changed = sorted(k for k in before if before[k] != after[k] and k not in allowed)
        assert not changed, f"{frame!r} answered {reply} but changed {changed}"


def check_valid_result(request_type: str, request: dict, reply: dict) -> None:
    """A well-formed request is never refused for its form: `ok` (`pong`), or
    an error about the data it names."""
    if reply["type"] == "error":
        assert reply["code"] in fs.STATE_ERRORS | fs.COMMON_ERRORS, f"{request!r}: {reply}"
        return
    result = reply.get("result")
    if request_type == "send":
        assert result["client_msg_id"] == request["client_msg_id"], (request, reply)
        assert result["conversation_id"] == request["conversation_id"], (request, reply)
    elif request_type in ("read", "delivered"):
        assert result["conversation_id"] == request["conversation_id"], (request, reply)
        assert 0 <= result["read_seq"] <= result["delivered_seq"], reply
    elif request_type == "presence":
        assert result == {"status": request["status"]}, reply
    elif request_type == "typing":
        assert result == {"conversation_id": request["conversation_id"], "state": request["state"]}, reply
    elif request_type == "fetch":
        seqs = [change["seq"] for change in result["changes"]]
        assert seqs == sorted(seqs) and len(seqs) <= 200, reply
        assert all(seq > request.get("after_seq", 0) for seq in seqs), reply


def run_batch(session: Session, frames, on_reply=None) -> None:
    """Send the frames one by one and check each reply and what it stored (by
    counts); when no reply allowed a write, also compare everything stored,
    row by row, before and after the batch."""
    state = session.stored if session.stored is not None else stored_state()
    session.stored = None  # until this batch is known to have written nothing
    before = stored_counts()
    writes = False
    for frame in frames:
        reply = session.exchange(frame)
        after = stored_counts()
        if reply is None:  # closed (with a documented code) before it was handled
            writes = True
        else:
            expected = check_reply(frame, reply)
            allowed = allowed_changes(reply, expected)
            check_stored(frame, reply, allowed, before, after)
            writes = writes or allowed != set()
            if on_reply:
                on_reply(frame, reply)
        before = after
    # Nothing else writes between batches: what a batch without writes leaves
    # is where the next one starts.
    if not writes:
        assert stored_state() == state, f"{frames!r} changed what is stored, though no reply allowed it"
        session.stored = state
    session.assert_serving()
    assert_log_clean(session.server)


@pytest.fixture
def session(fuzz_server, loop, world):
    _, fuzzer_token, observer_token = world
    running = Session(fuzz_server, loop, fuzzer_token, observer_token)
    yield running
    running.close()
    assert_log_clean(fuzz_server)


def test_valid_requests_get_ok_or_an_error_about_their_data(session, world):
    the_world = world[0]
    requests: dict[str, tuple] = {}

    def remember(frame, reply):
        request_type, request = requests[frame.data]
        if fs.expectation(frame.data).request_type:  # not grown past max_frame_bytes by unknown fields
            check_valid_result(request_type, request, reply)

    @settings(PROPERTY_SETTINGS, max_examples=100)
    @given(
        st.lists(st.tuples(fs.valid_requests(the_world, current_version=True), st.booleans()), min_size=1, max_size=6)
    )
    def prop(drawn):
        frames = []
        for (request_type, request), ascii in drawn:
            if request.get("version") is fs.CURRENT_VERSION:
                request = {**request, "version": Message.objects.get(pk=request["message_id"]).version}
            frame = fs.frame_of(request, f"valid {request_type}", ascii=ascii)
            requests[frame.data] = (request_type, request)
            frames.append(frame)
        run_batch(session, frames, on_reply=remember)

    prop()


def test_mutated_requests_get_documented_errors_and_store_nothing(session, world):
    @settings(PROPERTY_SETTINGS, max_examples=150)
    @given(st.lists(fs.mutated_frames(world[0]), min_size=1, max_size=5))
    def prop(frames):
        run_batch(session, frames)

    prop()


def test_random_frames_get_documented_errors_and_store_nothing(session):
    @settings(PROPERTY_SETTINGS, max_examples=120)
    @given(st.lists(fs.random_frames(), min_size=1, max_size=5))
    def prop(frames):
        run_batch(session, frames)

    prop()


# Two departures from §4 the properties above once found, each as its minimal frame.


@pytest.mark.parametrize("ref_text", ["1000000000000000000000000", "-100000000000000000000000", "9" * 64])
def test_an_integer_ref_of_up_to_64_characters_is_echoed(session, ref_text):
    reply = session.exchange(fs.Frame('{"type":"ping","ref":' + ref_text + "}", "ping with a long integer ref"))
    assert reply["type"] == "pong" and reply["ref"] == int(ref_text), reply


def test_a_ref_holding_nul_is_refused(session):
    reply = session.exchange(fs.Frame('{"type":"ping","ref":"\\u0000"}', "ping with a NUL ref"))
    assert (reply["type"], reply.get("code"), reply.get("field"), reply["ref"]) == (
        "error",
        "invalid_frame",
        "ref",
        None,
    )
