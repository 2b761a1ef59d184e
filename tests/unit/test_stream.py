"""ConversationStream: one conversation's ordered, gapless, exactly-once stream
to a device, against a fake log and a fake connection (no database, no layer)."""

import asyncio
import json

import pytest

from conversations.changelog import change_event
from gateway import stream as stream_module
from gateway.stream import MAX_EMPTY_REFILLS, REFILL_BATCH, ConversationStream

from .fakes import WAIT_SECONDS, FakeLog, FakeStreamConnection, change, event_frame, removal, reset_frame

CID = 10


@pytest.fixture
def log(monkeypatch):
    log = FakeLog()
    monkeypatch.setattr(stream_module, "load_changes", log.load)
    return log


@pytest.fixture
def connection():
    return FakeStreamConnection(user_id=1)


@pytest.fixture
def make_stream(connection):
    def make(cursor=0, until=None):
        stream = ConversationStream(connection, CID, cursor, until=until)
        connection.stream = stream
        return stream

    return make


def read(after, until=None):
    return (CID, after, until, REFILL_BATCH)


def sent(connection):
    return [json.loads(text) for text in connection.sent.items]


async def settle(stream):
    """Until the stream's refill (if any) is over; a refill that hangs fails the test."""
    await asyncio.wait_for(stream.wait(), WAIT_SECONDS)


async def offer(stream, c):
    event = change_event(c)
    await stream.offer(c.seq, event.text(), c.kind, event.meta)


async def test_start_reads_the_log_after_the_cursor_then_sends_live_events_in_order(log, connection, make_stream):
    log.add(*(change(CID, seq) for seq in (1, 2, 3)))
    stream = make_stream(cursor=1)
    stream.start()
    await settle(stream)
    assert sent(connection) == [event_frame(change(CID, 2)), event_frame(change(CID, 3))]

    await offer(stream, change(CID, 4))
    await offer(stream, change(CID, 5))

    assert [f["seq"] for f in sent(connection)] == [2, 3, 4, 5]
    assert stream.cursor == 5
    assert log.reads == [read(1)]  # live events in order never touch the log


async def test_events_at_or_below_the_cursor_are_dropped(log, connection, make_stream, settings):
    settings.WS_GAP_GRACE_SECONDS = 0.01
    log.add(change(CID, 1), change(CID, 2))
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)

    await offer(stream, change(CID, 2))  # seen live after the log read: already sent
    await offer(stream, change(CID, 1))
    await offer(stream, change(CID, 3))
    await offer(stream, change(CID, 3))
    await asyncio.sleep(0.05)  # past the grace period: a duplicate is no gap to refill

    assert [f["seq"] for f in sent(connection)] == [1, 2, 3]
    assert log.reads == [read(0)]


async def test_events_before_start_are_held_and_follow_the_log_read(log, connection, make_stream):
    log.add(change(CID, 1))
    stream = make_stream(cursor=0)
    await offer(stream, change(CID, 2, body="live 2"))  # not live yet: held, no timer
    await offer(stream, change(CID, 1))
    assert connection.sent.items == []

    stream.start()
    await settle(stream)

    assert sent(connection) == [event_frame(change(CID, 1)), event_frame(change(CID, 2, body="live 2"))]


async def test_a_gap_filled_within_the_grace_period_is_released_in_order_without_reading_the_log(
    log, connection, make_stream, settings
):
    settings.WS_GAP_GRACE_SECONDS = 0.05
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)
    await offer(stream, change(CID, 1))
    await offer(stream, change(CID, 3))
    await offer(stream, change(CID, 4))
    assert [f["seq"] for f in sent(connection)] == [1]

    await offer(stream, change(CID, 2))

    assert [f["seq"] for f in sent(connection)] == [1, 2, 3, 4]
    await asyncio.sleep(0.1)  # past the grace period: the timer was cancelled, no refill
    assert log.reads == [read(0)]
    assert len(connection.sent.items) == 4


async def test_a_gap_left_after_a_partial_fill_is_still_refilled(log, connection, make_stream, settings):
    settings.WS_GAP_GRACE_SECONDS = 0.01
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)
    log.add(*(change(CID, seq) for seq in (1, 2, 3, 4)))  # committed after the start's read
    for seq in (1, 3, 5):
        await offer(stream, change(CID, seq, body=f"live {seq}"))
    await offer(stream, change(CID, 2, body="live 2"))  # 3 follows; 4 is still missing

    await connection.sent.wait_for(5)
    await settle(stream)

    assert sent(connection) == [
        event_frame(change(CID, 1, body="live 1")),
        event_frame(change(CID, 2, body="live 2")),
        event_frame(change(CID, 3, body="live 3")),
        event_frame(change(CID, 4)),  # from the log
        event_frame(change(CID, 5, body="live 5")),
    ]
    assert log.reads == [read(0), read(3)]


async def test_a_gap_that_persists_is_refilled_from_the_log_then_the_held_events_follow(
    log, connection, make_stream, settings
):
    settings.WS_GAP_GRACE_SECONDS = 0.01
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)
    log.add(change(CID, 1), change(CID, 2))  # seq 3 is only live so far
    await offer(stream, change(CID, 1, body="live 1"))
    await offer(stream, change(CID, 3, body="live 3"))
    assert len(connection.sent.items) == 1

    await connection.sent.wait_for(3)
    await settle(stream)

    assert sent(connection) == [
        event_frame(change(CID, 1, body="live 1")),
        event_frame(change(CID, 2)),
        event_frame(change(CID, 3, body="live 3")),
    ]
    assert log.reads == [read(0), read(1)]
    assert stream.cursor == 3


async def test_live_events_during_a_refill_are_held_until_it_ends(log, connection, make_stream):
    log.add(change(CID, 1))
    log.gate = asyncio.Event()
    stream = make_stream(cursor=0)
    stream.start()
    await asyncio.wait_for(log.read_started.wait(), WAIT_SECONDS)

    await offer(stream, change(CID, 1))  # committed before the read: seen both ways
    await offer(stream, change(CID, 2, body="live 2"))
    assert connection.sent.items == []
    log.gate.set()
    await settle(stream)

    assert sent(connection) == [event_frame(change(CID, 1)), event_frame(change(CID, 2, body="live 2"))]
    assert log.reads == [read(0)]


async def test_a_hole_in_the_log_sends_a_log_gap_reset_before_the_next_change(log, connection, make_stream):
    log.add(*(change(CID, seq) for seq in (1, 2, 5, 6)))  # 3 and 4 were deleted by hand
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)

    assert sent(connection) == [
        event_frame(change(CID, 1)),
        event_frame(change(CID, 2)),
        reset_frame(CID, 4, "log_gap"),
        event_frame(change(CID, 5)),
        event_frame(change(CID, 6)),
    ]
    assert stream.cursor == 6


async def test_held_events_the_log_never_fills_end_in_a_reset_at_the_highest_held_seq(log, connection, make_stream):
    log.add(change(CID, 1))  # live events say 3 and 5 exist; the log stops at 1
    stream = make_stream(cursor=0)
    await offer(stream, change(CID, 3))
    await offer(stream, change(CID, 5))
    stream.start()
    await settle(stream)

    assert sent(connection) == [event_frame(change(CID, 1)), reset_frame(CID, 5, "log_gap")]
    assert log.reads == [read(0)] + [read(1)] * MAX_EMPTY_REFILLS
    assert stream.cursor == 5

    await offer(stream, change(CID, 6))
    assert sent(connection)[-1] == event_frame(change(CID, 6))


async def test_until_stops_the_stream_at_the_removal_and_untracks(log, connection, make_stream):
    log.add(change(CID, 1), change(CID, 2), removal(CID, 3, user_id=1), change(CID, 4))
    stream = make_stream(cursor=1, until=3)
    stream.start()
    await settle(stream)

    assert sent(connection) == [event_frame(change(CID, 2)), event_frame(removal(CID, 3, user_id=1))]
    assert log.reads == [read(1, until=3)]
    assert connection.untracked == [CID]
    assert stream.ended

    await offer(stream, change(CID, 4))
    assert len(connection.sent.items) == 2


async def test_until_untracks_at_the_limit_whatever_the_kind(log, connection, make_stream):
    log.add(change(CID, 1), change(CID, 2), change(CID, 3))
    stream = make_stream(cursor=0, until=2)
    stream.start()
    await settle(stream)

    assert [f["seq"] for f in sent(connection)] == [1, 2]
    assert connection.untracked == [CID]


async def test_only_the_users_own_removal_untracks_a_live_stream(log, connection, make_stream):
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)

    await offer(stream, removal(CID, 1, user_id=2))
    assert connection.untracked == []
    await offer(stream, removal(CID, 2, user_id=1))
    assert connection.untracked == [CID]
    await offer(stream, change(CID, 3))

    assert sent(connection) == [event_frame(removal(CID, 1, user_id=2)), event_frame(removal(CID, 2, user_id=1))]


async def test_stop_cancels_a_running_refill(log, connection, make_stream):
    log.add(change(CID, 1))
    log.gate = asyncio.Event()  # the read never returns
    stream = make_stream(cursor=0)
    task = stream.start()
    await asyncio.wait_for(log.read_started.wait(), WAIT_SECONDS)
    await offer(stream, change(CID, 1))

    stream.stop()
    await settle(stream)

    assert task.cancelled()
    assert connection.sent.items == []
    await offer(stream, change(CID, 2))
    assert connection.sent.items == []


async def test_a_stopped_stream_does_not_refill_when_its_gap_grace_ends(log, connection, make_stream, settings):
    settings.WS_GAP_GRACE_SECONDS = 0.01
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)
    await offer(stream, change(CID, 2))

    stream.stop()
    await asyncio.sleep(0.05)

    assert log.reads == [read(0)]
    assert connection.sent.items == []


async def test_a_failed_refill_keeps_the_cursor_and_the_next_gap_refills(log, connection, make_stream, settings):
    settings.WS_GAP_GRACE_SECONDS = 0.01
    log.add(change(CID, 1), change(CID, 2))
    log.failures = 1
    stream = make_stream(cursor=0)
    stream.start()
    await settle(stream)
    assert connection.sent.items == []
    assert stream.cursor == 0

    await offer(stream, change(CID, 2))
    await connection.sent.wait_for(2)
    await settle(stream)

    assert sent(connection) == [event_frame(change(CID, 1)), event_frame(change(CID, 2))]
    assert log.reads == [read(0), read(0)]
