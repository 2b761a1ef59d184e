"""Shared reads of the change log, without a database: one read for many
streams asking the same at once, reuse for a moment after, failures and
cancellations passed on correctly."""

import asyncio

import pytest

from gateway import log_reads
from gateway.log_reads import SharedReads

from .fakes import change, logged_change


class CountingLog:
    """Stands in for the two database reads; a read waits for `gate` when set."""

    def __init__(self):
        self.between_reads: list[tuple] = []
        self.range_reads: list[dict] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.last_seq: int | None = None  # where the log ends, for range reads

    async def between(self, conversation_id, after, until, limit):
        self.between_reads.append((conversation_id, after, until, limit))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("the database went away")
        return [logged_change(change(conversation_id, seq)) for seq in range(after + 1, after + 4)]

    async def ranges(self, ranges):
        self.range_reads.append(dict(ranges))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("the database went away")
        ends = {
            cid: up_to if self.last_seq is None else min(up_to, self.last_seq) for cid, (_, up_to) in ranges.items()
        }
        return {
            cid: [logged_change(change(cid, seq)) for seq in range(after + 1, ends[cid] + 1)]
            for cid, (after, _) in ranges.items()
        }


@pytest.fixture
def log(monkeypatch):
    fake = CountingLog()
    monkeypatch.setattr(log_reads, "_read_between", fake.between)
    monkeypatch.setattr(log_reads, "_read_ranges", fake.ranges)
    return fake


async def test_the_same_read_asked_by_many_streams_at_once_is_made_once(log):
    reads = SharedReads()
    log.gate = asyncio.Event()
    waiting = [asyncio.create_task(reads.between(7, 10, until=None, limit=200, needed_through=13)) for _ in range(50)]
    await asyncio.sleep(0)
    log.gate.set()
    results = await asyncio.gather(*waiting)
    assert log.between_reads == [(7, 10, None, 200)]
    assert all([c.seq for c in r] == [11, 12, 13] for r in results)
    assert results[0][0].text.startswith('{"type":"event"')


async def test_a_read_is_reused_for_a_moment_then_made_again(log, monkeypatch):
    reads = SharedReads()
    now = [100.0]
    monkeypatch.setattr(log_reads.time, "monotonic", lambda: now[0])
    await reads.between(7, 10, until=None, limit=200, needed_through=13)
    await reads.between(7, 10, until=None, limit=200, needed_through=13)
    assert len(log.between_reads) == 1
    await reads.between(7, 11, until=None, limit=200, needed_through=13)  # another cursor: another read
    assert len(log.between_reads) == 2
    now[0] += log_reads.REUSE_SECONDS + 0.1
    await reads.between(7, 10, until=None, limit=200, needed_through=13)
    assert len(log.between_reads) == 3


async def test_a_failed_read_fails_its_waiters_and_is_not_kept(log):
    reads = SharedReads()
    log.gate, log.fail = asyncio.Event(), True
    waiting = [asyncio.create_task(reads.between(7, 10, until=None, limit=200, needed_through=13)) for _ in range(3)]
    await asyncio.sleep(0)
    log.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    log.fail, log.gate = False, None
    assert [c.seq for c in await reads.between(7, 10, until=None, limit=200, needed_through=13)] == [11, 12, 13]
    assert len(log.between_reads) == 2


async def test_when_the_reading_stream_stops_a_waiting_one_reads_for_itself(log):
    reads = SharedReads()
    log.gate = asyncio.Event()
    leader = asyncio.create_task(reads.between(7, 10, until=None, limit=200, needed_through=13))
    await asyncio.sleep(0)
    follower = asyncio.create_task(reads.between(7, 10, until=None, limit=200, needed_through=13))
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    log.gate.set()
    assert [c.seq for c in await follower] == [11, 12, 13]
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(log.between_reads) == 2


async def test_a_read_that_does_not_reach_what_the_reader_knows_is_not_reused(log):
    """The log grew since: a device that knows of seq 20 must not get a read
    that stopped at 13, nor one who says nothing of how far the log goes."""
    reads = SharedReads()
    await reads.between(7, 10, until=None, limit=200, needed_through=13)
    assert [c.seq for c in await reads.between(7, 10, until=None, limit=200, needed_through=20)] == [11, 12, 13]
    await reads.between(7, 10, until=None, limit=200)
    assert len(log.between_reads) == 3
    # A read cut at its limit holds everything up to where it stops.
    await reads.between(8, 0, until=None, limit=3, needed_through=1)
    await reads.between(8, 0, until=None, limit=3, needed_through=500)
    assert len(log.between_reads) == 4


async def test_ranges_read_only_what_was_not_read_a_moment_ago(log):
    reads = SharedReads()
    first = await reads.ranges({1: (0, 2), 2: (5, 6)}, {1: 2, 2: 6}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={})
    assert {cid: [c.seq for c in found] for cid, found in first.items()} == {1: [1, 2], 2: [6]}
    second = await reads.ranges({1: (0, 2), 3: (0, 1)}, {1: 2, 3: 1}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={})
    assert {cid: [c.seq for c in found] for cid, found in second.items()} == {1: [1, 2], 3: [1]}
    assert log.range_reads == [{1: (0, 2), 2: (5, 6)}, {3: (0, 1)}]


async def test_a_range_read_before_the_log_grew_is_read_again(log):
    reads = SharedReads()
    log.last_seq = 1
    assert [
        c.seq for c in (await reads.ranges({1: (0, 200)}, {1: 1}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={}))[1]
    ] == [1]
    await reads.ranges(
        {1: (0, 200)}, {1: 4}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={}
    )  # a later sync knows the log reaches 4
    assert len(log.range_reads) == 2


# A reader subscribed before any of the reads in a test began.
SUBSCRIBED_BEFORE = 0.0


def seqs(found: dict) -> dict:
    return {cid: [c.seq for c in changes] for cid, changes in found.items()}


async def test_ranges_being_read_are_waited_for_not_read_again(log):
    """Devices of a conversation coming back together ask for its range at the same moment."""
    reads = SharedReads()
    log.gate = asyncio.Event()
    first = asyncio.create_task(
        reads.ranges({1: (0, 2), 2: (5, 6)}, {1: 2, 2: 6}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={})
    )
    await asyncio.sleep(0)
    others = [
        asyncio.create_task(
            reads.ranges({1: (0, 2), 3: (0, 1)}, {1: 2, 3: 1}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={})
        )
        for _ in range(2)
    ]
    await asyncio.sleep(0)
    log.gate.set()
    assert seqs(await first) == {1: [1, 2], 2: [6]}
    assert [seqs(await other) for other in others] == [{1: [1, 2], 3: [1]}] * 2
    # 3 was asked for by both others at once: the second waited for the first's read of it.
    assert log.range_reads == [{1: (0, 2), 2: (5, 6)}, {3: (0, 1)}]


async def test_when_the_sync_reading_a_range_stops_a_waiting_one_reads_it_itself(log):
    reads = SharedReads()
    log.gate = asyncio.Event()
    leader = asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={}))
    await asyncio.sleep(0)
    follower = asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={}))
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    log.gate.set()
    assert seqs(await follower) == {1: [1, 2]}
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert log.range_reads == [{1: (0, 2)}, {1: (0, 2)}]


async def test_a_failed_range_read_fails_its_waiters_and_is_not_kept(log):
    reads = SharedReads()
    log.gate, log.fail = asyncio.Event(), True
    waiting = [
        asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={}))
        for _ in range(3)
    ]
    await asyncio.sleep(0)
    log.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    log.fail, log.gate = False, None
    assert seqs(await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=SUBSCRIBED_BEFORE, routed_since={})) == {
        1: [1, 2]
    }
    assert len(log.range_reads) == 2


async def test_a_range_read_that_began_before_the_reader_subscribed_does_not_serve_it(log, monkeypatch):
    """A change that committed after the reader's plan but was dispatched before
    its subscription is in no earlier read, and never reaches the reader live."""
    now = [100.0]
    monkeypatch.setattr(log_reads.time, "monotonic", lambda: now[0])
    reads = SharedReads()
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=99.0, routed_since={})
    now[0] = 100.5
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=100.2, routed_since={})  # subscribed after that read began
    assert len(log.range_reads) == 2
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=100.4, routed_since={})  # the second read began after: reused
    assert len(log.range_reads) == 2


async def test_a_range_being_read_since_before_the_reader_subscribed_is_read_again(log, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(log_reads.time, "monotonic", lambda: now[0])
    reads = SharedReads()
    log.gate = asyncio.Event()
    early = asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=99.0, routed_since={}))
    await asyncio.sleep(0)
    now[0] = 100.5
    late = asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=100.2, routed_since={}))
    along = asyncio.create_task(reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=99.5, routed_since={}))
    await asyncio.sleep(0)
    log.gate.set()
    assert [seqs(await t) for t in (early, late, along)] == [{1: [1, 2]}] * 3
    assert len(log.range_reads) == 2  # `along` waited for the early read; `late` read for itself


async def test_an_earlier_read_serves_where_the_layer_routed_the_conversation_here_since_before_it(log, monkeypatch):
    """Whatever committed after such a read began was dispatched here: before
    the subscription (so at most the seq dispatched by then, which the read
    must reach) or after it (so to the reader)."""
    now = [100.0]
    monkeypatch.setattr(log_reads.time, "monotonic", lambda: now[0])
    reads = SharedReads()
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=99.0, routed_since={})
    now[0] = 100.5
    routed_since_before = {1: 50.0}
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=100.2, routed_since=routed_since_before)
    assert len(log.range_reads) == 1  # reused
    await reads.ranges({1: (0, 2)}, {1: 2}, subscribed_at=100.2, routed_since={1: 100.1})  # routed after it began
    assert len(log.range_reads) == 2
    log.last_seq = 1
    await reads.ranges({1: (0, 5)}, {1: 1}, subscribed_at=99.0, routed_since={})
    now[0] = 101.0
    # Seq 3 was dispatched here before this reader subscribed: the read of 1 does not reach it.
    await reads.ranges({1: (0, 5)}, {1: 3}, subscribed_at=100.9, routed_since={1: 50.0})
    assert len(log.range_reads) == 4
