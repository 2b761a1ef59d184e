"""A connection's limits without a server: token buckets, the request queue,
the rate-limit close, and what happens when the client stops reading."""

import asyncio
import functools
import json
from types import SimpleNamespace

import pytest

from gateway import close_codes, inbox
from gateway.connection import DeviceConnection
from gateway.limits import TokenBucket, UserBuckets

from .fakes import FakeConsumer, FakeHub


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic under the test's control."""
    now = SimpleNamespace(value=1000.0)
    monkeypatch.setattr("gateway.limits.time", SimpleNamespace(monotonic=lambda: now.value))
    return now


def test_a_bucket_gives_its_burst_then_one_token_per_interval(clock):
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_seconds() == pytest.approx(0.5)
    clock.value += 0.5
    assert bucket.take() and not bucket.take()
    clock.value += 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst


def test_user_buckets_are_shared_and_dropped_with_the_last_connection():
    buckets = UserBuckets()
    first, second = buckets.attach(5), buckets.attach(5)
    assert first is second and buckets.connections_of(5) == 2
    buckets.detach(5)
    assert buckets.connections_of(5) == 1
    buckets.detach(5)
    assert buckets.connections_of(5) == 0 and buckets.attach(5) is not first


def make_connection(consumer=None, hub=None):
    return DeviceConnection(consumer or FakeConsumer(), hub or FakeHub(), SimpleNamespace(pk=7, user_id=3))


def frames_sent(consumer) -> list[dict]:
    return [json.loads(text) for text in consumer.sent.items]


async def test_requests_past_the_rate_are_refused_with_a_hint_then_the_connection_closes(settings, clock):
    settings.WS_RATE_PER_CONNECTION, settings.WS_RATE_BURST_PER_CONNECTION = 1.0, 2
    settings.WS_RATE_STRIKES = 3
    consumer = FakeConsumer()
    connection = make_connection(consumer)
    for n in range(2):
        await connection.inbox.accept(json.dumps({"type": "ping", "ref": n}), None)
    await consumer.sent.wait_for(2)
    for n in range(2, 6):
        await connection.inbox.accept(json.dumps({"type": "ping", "ref": n}), None)
    sent = frames_sent(consumer)
    assert [(f["type"], f["ref"]) for f in sent] == [("pong", 0), ("pong", 1)] + [("error", n) for n in range(2, 6)]
    assert all(f["code"] == "rate_limited" and f["details"]["retry_after"] == 1.0 for f in sent[2:])
    # Three strikes are allowed; the fourth refusal closes the connection.
    assert consumer.closes == [(close_codes.RATE_LIMITED, "rate limit exceeded")]


async def test_requests_waiting_behind_a_slow_one_are_bounded(settings, monkeypatch):
    settings.WS_MAX_PENDING_REQUESTS = 2
    release = asyncio.Event()

    async def slow(connection, frame):
        await release.wait()
        return {"n": frame["ref"]}

    monkeypatch.setitem(inbox.HANDLERS, "slow", slow)
    consumer = FakeConsumer()
    connection = make_connection(consumer)
    for n in range(4):
        await connection.inbox.accept(json.dumps({"type": "slow", "ref": n}), None)
        await asyncio.sleep(0)  # let the worker take the first one
    await consumer.sent.wait_for(1)
    (refused,) = frames_sent(consumer)
    assert (refused["ref"], refused["code"]) == (3, "rate_limited")
    assert connection.in_flight == 3
    release.set()
    await consumer.sent.wait_for(4)
    assert [f["result"]["n"] for f in frames_sent(consumer)[1:]] == [0, 1, 2]  # in order
    assert connection.in_flight == 0


async def test_a_full_queue_hints_at_the_time_requests_of_the_connection_take(monkeypatch):
    now = SimpleNamespace(value=500.0)
    monkeypatch.setattr("gateway.inbox.time", SimpleNamespace(monotonic=lambda: now.value, perf_counter=lambda: 0.0))

    async def two_seconds(connection, frame):
        now.value += 2.0
        return {}

    monkeypatch.setitem(inbox.HANDLERS, "slow", two_seconds)
    consumer = FakeConsumer()
    connection = make_connection(consumer)
    assert connection.inbox.full_retry_after() == inbox.PENDING_FULL_RETRY_MIN_SECONDS
    for n in range(8):
        await connection.inbox.accept(json.dumps({"type": "slow", "ref": n}), None)
        await consumer.sent.wait_for(n + 1)
    assert 1.5 < connection.inbox.full_retry_after() <= 2.0  # from 0.1 s towards the 2 s they take
    connection.inbox.request_seconds = 60.0
    assert connection.inbox.full_retry_after() == inbox.PENDING_FULL_RETRY_MAX_SECONDS


class FakeTransport:
    def __init__(self, queued: int):
        self.dataBuffer, self.offset, self._tempDataLen = b"x" * queued, 0, 0
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


def consumer_with_transport(queued: int) -> FakeConsumer:
    consumer = FakeConsumer()
    protocol = SimpleNamespace(transport=FakeTransport(queued))
    consumer.base_send = functools.partial(lambda protocol, message: None, protocol)
    return consumer


@pytest.mark.parametrize(
    "queued, state_sent, log_event_sent, closed",
    [(0, True, True, False), (600, False, True, False), (1100, False, False, True)],
)
async def test_a_client_that_does_not_read_loses_state_events_first_then_the_connection(
    settings, queued, state_sent, log_event_sent, closed
):
    settings.WS_MAX_OUTBOUND_BYTES = 1000
    consumer = consumer_with_transport(queued)
    connection = make_connection(consumer)
    await connection.send_text("typing", droppable=True)
    await connection.send_text("message.created")
    assert consumer.sent.items == [
        t for t, sent in (("typing", state_sent), ("message.created", log_event_sent)) if sent
    ]
    assert bool(consumer.closes) is closed
    if closed:
        assert consumer.closes == [(close_codes.TOO_FAR_BEHIND, "too slow; reconnect and sync")]
        assert connection.transport.aborted
    assert connection.dropped_frames == (1 if not state_sent else 0)
