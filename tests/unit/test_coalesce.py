"""Coalescer: updates to one key within a window become one flush, on the
server's event loop, whichever thread submitted them."""

import asyncio
import logging
import threading

import pytest

from core import server_loop
from core.coalesce import Coalescer
from core.events import Event
from delivery import live as delivery_live

from .fakes import Recorder

WINDOW = 0.02


@pytest.fixture
def no_server_loop():
    previous = server_loop.get()
    server_loop.register(None)
    yield
    server_loop.register(previous)


@pytest.fixture
async def on_server_loop():
    previous = server_loop.get()
    server_loop.register(asyncio.get_running_loop())
    yield
    server_loop.register(previous)


def test_without_a_server_loop_every_submit_flushes_at_once(no_server_loop):
    flushed = []

    async def flush(key, value):
        flushed.append((key, value))

    coalescer = Coalescer(lambda: 60, flush, merge=lambda old, new: old + new)
    coalescer.submit("k", 1)
    assert flushed == [("k", 1)]
    coalescer.submit("k", 2)
    assert flushed == [("k", 1), ("k", 2)]


def test_without_a_server_loop_a_failed_flush_is_logged_not_raised(no_server_loop, caplog):
    async def flush(key, value):
        raise RuntimeError("layer down")

    Coalescer(lambda: 60, flush).submit("k", 1)

    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["flushing 'k' failed"]


def test_a_server_loop_that_is_not_running_drops_submits_from_other_threads():
    flushed = []

    async def flush(key, value):
        flushed.append((key, value))

    previous = server_loop.get()
    stopped = asyncio.new_event_loop()  # registered, not closed, not running: the server is exiting
    server_loop.register(stopped)
    try:
        Coalescer(lambda: 0, flush).submit("k", 1)
    finally:
        server_loop.register(previous)
        stopped.close()
    assert flushed == []


def recorder():
    flushes = Recorder()

    async def flush(key, value):
        flushes.append((key, value, threading.get_ident()))

    return flushes, flush


async def test_submits_within_the_window_become_one_flush_with_the_merged_value(on_server_loop):
    flushes, flush = recorder()
    coalescer = Coalescer(lambda: WINDOW, flush, merge=lambda old, new: old + [new])
    coalescer.submit("k", [1])
    coalescer.submit("k", 2)
    coalescer.submit("k", 3)
    await asyncio.sleep(0)
    assert flushes.items == []  # nothing before the window has passed

    await flushes.wait_for(1)
    coalescer.submit("k", [4])  # a new window
    await flushes.wait_for(2)

    me = threading.get_ident()
    assert flushes.items == [("k", [1, 2, 3], me), ("k", [4], me)]


async def test_the_newest_value_wins_by_default(on_server_loop):
    flushes, flush = recorder()
    coalescer = Coalescer(lambda: WINDOW, flush)
    for value in ("away", "online", "busy"):
        coalescer.submit("u1", value)
    await flushes.wait_for(1)
    coalescer.submit("u1", "offline")
    await flushes.wait_for(2)

    assert [(key, value) for key, value, _ in flushes.items] == [("u1", "busy"), ("u1", "offline")]


async def test_submits_from_another_thread_are_handed_to_the_loop(on_server_loop):
    flushes, flush = recorder()
    coalescer = Coalescer(lambda: WINDOW, flush, merge=lambda old, new: old | new)

    await asyncio.to_thread(coalescer.submit, "k", frozenset({1}))
    coalescer.submit("k", frozenset({2}))
    await asyncio.to_thread(coalescer.submit, "k", frozenset({3}))
    await flushes.wait_for(1)
    coalescer.submit("k", frozenset({4}))
    await flushes.wait_for(2)

    me = threading.get_ident()
    assert flushes.items == [("k", frozenset({1, 2, 3}), me), ("k", frozenset({4}), me)]


async def test_different_keys_flush_separately(on_server_loop):
    flushes, flush = recorder()
    coalescer = Coalescer(lambda: WINDOW, flush, merge=lambda old, new: old + new)
    coalescer.submit("a", 1)
    coalescer.submit("b", 10)
    coalescer.submit("a", 2)
    coalescer.submit("b", 20)
    await flushes.wait_for(2)
    coalescer.submit("c", 100)
    await flushes.wait_for(3)

    assert sorted((key, value) for key, value, _ in flushes.items) == [("a", 3), ("b", 30), ("c", 100)]


async def test_a_failed_flush_on_the_loop_is_logged_and_later_flushes_go_on(on_server_loop, caplog):
    flushes = Recorder()

    async def flush(key, value):
        if value == "bad":
            raise RuntimeError("layer down")
        flushes.append((key, value))

    coalescer = Coalescer(lambda: WINDOW, flush)
    coalescer.submit("a", "bad")
    coalescer.submit("b", "good")
    await flushes.wait_for(1)
    await asyncio.sleep(0)

    assert flushes.items == [("b", "good")]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["coalesced flush failed"]


def cursor(user_id, delivered_seq, read_seq):
    return {user_id: {"user_id": user_id, "delivered_seq": delivered_seq, "read_seq": read_seq}}


async def test_receipts_keep_the_highest_cursors_whatever_order_the_moves_arrive_in(
    on_server_loop, monkeypatch, settings
):
    settings.RECEIPT_COALESCE_SECONDS = WINDOW
    broadcasts = Recorder()

    async def send_async(event, groups):
        broadcasts.append((event, groups))

    monkeypatch.setattr(delivery_live, "send_async", send_async)
    receipts = delivery_live.receipts

    await asyncio.to_thread(receipts.submit, 42, cursor(6, delivered_seq=3, read_seq=3))
    receipts.submit(42, cursor(5, delivered_seq=7, read_seq=4))
    receipts.submit(42, cursor(5, delivered_seq=6, read_seq=6))  # a later read, an older delivered
    await asyncio.to_thread(receipts.submit, 42, cursor(6, delivered_seq=2, read_seq=1))  # stale
    await broadcasts.wait_for(1)

    assert broadcasts.items == [  # one event, members in id order
        (
            Event(
                kind="receipts.updated",
                conversation_id=42,
                payload={
                    "receipts": [
                        {"user_id": 5, "delivered_seq": 7, "read_seq": 6},
                        {"user_id": 6, "delivered_seq": 3, "read_seq": 3},
                    ]
                },
            ),
            ["conversation.42"],
        )
    ]
