"""Which streams the periodic reconciliation sends to the log (gateway.upkeep.streams_behind):
a stream missing a change that committed a round ago always; one missing only the newest
changes only when it heard nothing live since the last round (on a busy process those are
still on their way, and reading the log for them on every stream adds to the delay),
and how streams told how far the log goes share one read."""

import asyncio

from gateway import log_reads
from gateway.stream import ConversationStream
from gateway.upkeep import streams_behind

from .fakes import FakeStreamConnection, change, logged_change


def stream(conversation_id: int, cursor: int, *, heard_live: bool) -> ConversationStream:
    made = ConversationStream(FakeStreamConnection(), conversation_id, cursor)
    made.heard_live = heard_live
    return made


def test_a_quiet_stream_behind_is_refilled_in_the_first_round():
    quiet = stream(1, cursor=4, heard_live=False)
    assert streams_behind([quiet], latest={1: 5}, seen_before={}) == [quiet]


def test_a_stream_hearing_live_events_is_left_to_them_for_one_round_then_refilled():
    busy = stream(1, cursor=4, heard_live=True)
    assert streams_behind([busy], latest={1: 9}, seen_before={1: 4}) == []
    # Next round: still short of what was committed a round ago, although events keep coming.
    busy.heard_live = True
    busy.cursor = 8
    assert streams_behind([busy], latest={1: 12}, seen_before={1: 9}) == [busy]


def test_a_stream_up_to_date_is_left_alone_and_every_mark_is_cleared():
    current = stream(1, cursor=5, heard_live=True)
    ahead = stream(2, cursor=7, heard_live=False)  # read the log after the last-seq query
    assert streams_behind([current, ahead], latest={1: 5, 2: 6}, seen_before={1: 5, 2: 6}) == []
    assert not current.heard_live and not ahead.heard_live


def test_live_events_heard_in_an_earlier_round_do_not_count():
    stream_ = stream(1, cursor=4, heard_live=True)
    streams_behind([stream_], latest={1: 4}, seen_before={})  # round 1: up to date; the mark is cleared
    assert streams_behind([stream_], latest={1: 6}, seen_before={1: 4}) == [stream_]


def test_offer_marks_the_stream_as_hearing_live_events():
    connection = FakeStreamConnection()
    made = ConversationStream(connection, 1, 0)
    connection.stream = made
    asyncio.run(made.offer(5, "{}", "message.created", {}))  # held (not live yet): still heard
    assert made.heard_live


def _two_streams_refilled(monkeypatch, known_through):
    """Two devices' streams of one conversation at the same cursor refilled at
    once, through the process's real shared reads: (reads made, frames each got)."""
    reads = []

    async def read_between(conversation_id, after, until, limit):
        reads.append((conversation_id, after))
        await asyncio.sleep(0.01)
        return [logged_change(change(conversation_id, seq)) for seq in (4, 5) if seq > after][:limit]

    monkeypatch.setattr(log_reads, "_read_between", read_between)

    async def refill_both():
        log_reads._per_loop.clear()
        connections = [FakeStreamConnection(device_id=7), FakeStreamConnection(device_id=8)]
        streams = [ConversationStream(c, 1, 3) for c in connections]
        for c, s in zip(connections, streams, strict=True):
            c.stream, s.live = s, True
        await asyncio.gather(*(s.refill("recovery", known_through=known_through) for s in streams))
        return [len(c.sent.items) for c in connections]

    sent = asyncio.run(refill_both())
    return reads, sent


def test_streams_told_how_far_the_log_goes_share_one_read(monkeypatch):
    reads, sent = _two_streams_refilled(monkeypatch, known_through=5)
    assert reads == [(1, 3)]
    assert sent == [2, 2]


def test_streams_not_told_read_for_themselves(monkeypatch):
    reads, sent = _two_streams_refilled(monkeypatch, known_through=None)
    assert reads == [(1, 3), (1, 3)]
    assert sent == [2, 2]
