"""A conversation's changes are handed to the layer in seq order: places are
taken in order, filled in any order, handed over from the head; a rolled-back
place is given up when its hook is dropped; on the server's loop each publish
waits for the one before it of the same conversation, and those piling up
behind it go together."""

import asyncio
import gc
from concurrent.futures import Future

import pytest

import core.publish
from core.events import Event
from core.publish_order import OnCommitHook, PublishLines


@pytest.fixture
def handed():
    return []


@pytest.fixture
def lines(handed):
    def hand_over(item, done: Future):
        handed.append(item)
        done.set_result(None)

    return PublishLines(hand_over, stale_after=60)


def test_places_filled_out_of_order_are_handed_over_in_order(lines, handed):
    first, second, third = (lines.take_place("c1") for _ in range(3))
    lines.fill(third, 3)
    lines.fill(second, 2)
    assert handed == []
    lines.fill(first, 1)
    assert handed == [1, 2, 3]
    assert lines.pending() == 0


def test_lines_of_different_conversations_do_not_wait_for_each_other(lines, handed):
    waiting = lines.take_place("c1")
    other = lines.take_place("c2")
    lines.fill(other, "c2:1")
    assert handed == ["c2:1"]
    lines.fill(waiting, "c1:1")
    assert handed == ["c2:1", "c1:1"]


def test_a_given_up_place_lets_the_line_move_on(lines, handed):
    rolled_back, committed = lines.take_place("c1"), lines.take_place("c1")
    lines.fill(committed, 2)
    assert handed == []
    lines.give_up(rolled_back)
    assert handed == [2]
    assert rolled_back.done.done()


def test_a_hook_dropped_uncalled_gives_its_place_up(lines, handed):
    place = lines.take_place("c1")
    behind = lines.take_place("c1")
    hook = OnCommitHook(lines, place, lambda: 1)
    lines.fill(behind, 2)
    assert handed == []
    del hook  # what a rollback does to the transaction's on_commit hooks
    gc.collect()
    assert handed == [2]


def test_a_called_hook_fills_its_place_with_what_it_makes_at_commit(lines, handed):
    hook = OnCommitHook(lines, lines.take_place("c1"), lambda: "made at commit")
    hook()
    assert handed == ["made at commit"]
    del hook
    gc.collect()
    assert handed == ["made at commit"]  # dropping it after the call changes nothing


def test_a_place_stuck_ahead_is_skipped_by_a_fill_once_stale(handed):
    lines = PublishLines(lambda item, done: (handed.append(item), done.set_result(None)), stale_after=0)
    lines.take_place("c1")  # never filled nor given up
    lines.fill(lines.take_place("c1"), 2)
    assert handed == [2]


def test_a_place_ahead_is_waited_for_until_stale(lines, handed):
    lines.take_place("c1")  # its transaction has not finished (stale_after is 60 s)
    lines.fill(lines.take_place("c1"), 2)
    assert handed == []


# Places taken before the seq is known (the send's one statement on PostgreSQL).


def test_a_place_taken_before_the_lock_is_handed_over_in_seq_order(lines, handed):
    first, second = lines.take_place("c1", before_lock=True), lines.take_place("c1", before_lock=True)
    lines.fill(first, 6)  # the first taken got the later seq
    assert handed == []  # the other, still running, may get a lower one
    lines.fill(second, 5)
    assert handed == [5, 6]
    assert lines.pending() == 0


def test_a_place_taken_before_the_lock_waits_for_every_place_taken_before_its_fill(lines, handed):
    mine = lines.take_place("c1", before_lock=True)
    later = lines.take_place("c1", before_lock=True)  # running while mine finishes: may get a lower seq
    lines.fill(mine, 8)
    assert handed == []
    lines.fill(later, 7)
    assert handed == [7, 8]


def test_a_place_taken_before_the_lock_does_not_wait_for_places_taken_after_its_fill(lines, handed):
    mine = lines.take_place("c1", before_lock=True)
    lines.fill(mine, 8)
    assert handed == [8]
    after = lines.take_place("c1", before_lock=True)  # its statement starts after mine committed
    lines.fill(after, 9)
    assert handed == [8, 9]


def test_a_change_logged_under_the_lock_and_a_send_around_it_go_in_seq_order(lines, handed):
    send = lines.take_place("c1", before_lock=True)  # its statement waits for the lock
    edit = lines.take_place("c1")  # taken under the lock: seq 4
    lines.fill(edit, 4)
    assert handed == []  # the send taken before may have a lower seq
    lines.fill(send, 5)
    assert handed == [4, 5]


def test_a_given_up_place_taken_before_the_lock_lets_the_line_move_on(lines, handed):
    refused, sent = lines.take_place("c1", before_lock=True), lines.take_place("c1", before_lock=True)
    lines.fill(sent, 3)
    lines.give_up(refused)  # not a member: the statement took no seq
    assert handed == [3]
    assert lines.pending() == 0


def test_a_fill_of_a_place_skipped_as_stale_hands_nothing_over(handed):
    lines = PublishLines(lambda item, done: (handed.append(item), done.set_result(None)), stale_after=0)
    stuck = lines.take_place("c1")
    lines.fill(lines.take_place("c1"), 2)
    lines.fill(stuck, 1)  # too late: the line moved on, and the log has it
    assert handed == [2]
    assert lines.pending() == 0


def change(seq: int) -> Event:
    return Event(kind="message.created", payload={"seq": seq}, conversation_id=7, seq=seq)


async def test_on_the_loop_a_publish_waits_for_the_one_before_it(monkeypatch):
    reached_the_layer = []
    first_started, first_may_finish = asyncio.Event(), asyncio.Event()

    async def send_async(event, groups):
        if event.seq == 2:
            first_started.set()
            await first_may_finish.wait()  # a slow group_send
        reached_the_layer.append(event.seq)

    monkeypatch.setattr(core.publish, "send_async", send_async)
    done = [Future() for _ in range(3)]
    core.publish._publish_in_turn(change(2), ["g"], done[0])
    await first_started.wait()
    core.publish._publish_in_turn(change(3), ["g"], done[1])
    other = Event(kind="message.created", payload={}, conversation_id=8, seq=5)
    core.publish._publish_in_turn(other, ["g"], done[2])
    await asyncio.wrap_future(done[2])  # another conversation does not wait
    assert reached_the_layer == [5]
    first_may_finish.set()
    await asyncio.wrap_future(done[1])
    assert reached_the_layer == [5, 2, 3]
    assert core.publish._waiting == {}


async def test_on_the_loop_changes_piling_up_behind_a_publish_go_in_one_message_per_group(monkeypatch):
    layer_messages = []
    first_started, first_may_finish = asyncio.Event(), asyncio.Event()

    async def send_async(event, groups):
        first_started.set()
        await first_may_finish.wait()
        layer_messages.append({group: [event.seq] for group in groups})

    async def send_batches_async(events_by_group):
        layer_messages.append({group: [e.seq for e in events] for group, events in events_by_group.items()})

    monkeypatch.setattr(core.publish, "send_async", send_async)
    monkeypatch.setattr(core.publish, "send_batches_async", send_batches_async)
    done = [Future() for _ in range(4)]
    core.publish._publish_in_turn(change(2), ["conversation.7"], done[0])
    await first_started.wait()
    core.publish._publish_in_turn(change(3), ["conversation.7"], done[1])
    core.publish._publish_in_turn(change(4), ["conversation.7", "user.1"], done[2])
    core.publish._publish_in_turn(change(5), ["conversation.7"], done[3])
    first_may_finish.set()
    for future in done:
        await asyncio.wrap_future(future)
    assert layer_messages == [{"conversation.7": [2]}, {"conversation.7": [3, 4, 5], "user.1": [4]}]
