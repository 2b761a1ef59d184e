"""Admission control without a server: places, the line, its bound and its
timeout, and a retry hint that grows with the line."""

import asyncio

import pytest

from gateway.admission import Admission


@pytest.fixture
def limits(settings):
    settings.WS_MAX_CONNECTING = 2
    settings.WS_MAX_CONNECT_QUEUE = 3
    settings.WS_CONNECT_QUEUE_TIMEOUT = 5.0
    settings.WS_OVERLOAD_RETRY_SECONDS = 1.0
    return settings


async def test_places_are_taken_then_the_line_is_served_in_arrival_order(limits):
    admission = Admission()
    assert await admission.enter() and await admission.enter()
    order = []

    async def wait_then_record(name):
        assert await admission.enter()
        order.append(name)

    waiters = [asyncio.create_task(wait_then_record(name)) for name in "abc"]
    await asyncio.sleep(0)
    assert admission.waiting == 3 and admission.in_progress == 2
    for _ in range(3):
        admission.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == ["a", "b", "c"]
    assert admission.in_progress == 2 and admission.waiting == 0  # places passed on, none freed
    admission.leave()
    admission.leave()
    assert admission.in_progress == 0


async def test_past_a_full_line_a_connection_is_refused_at_once(limits):
    admission = Admission()
    for _ in range(2):
        await admission.enter()
    line = [asyncio.create_task(admission.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    assert await admission.enter() is False
    for _ in range(3):
        admission.leave()
    assert await asyncio.gather(*line) == [True, True, True]


async def test_a_wait_that_runs_out_is_refused_and_leaves_the_line(limits):
    limits.WS_CONNECT_QUEUE_TIMEOUT = 0.01
    admission = Admission()
    for _ in range(2):
        await admission.enter()
    assert await admission.enter() is False
    assert admission.waiting == 0
    admission.leave()
    assert admission.in_progress == 1  # no one waiting: the place is freed


async def test_a_connection_that_goes_away_while_waiting_leaves_the_line(limits):
    admission = Admission()
    for _ in range(2):
        await admission.enter()
    gone = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert admission.waiting == 0
    admission.leave()
    assert admission.in_progress == 1


async def test_a_sync_counts_but_never_waits(limits):
    admission = Admission()
    for _ in range(2):
        await admission.enter()
    with admission.admitted():
        assert admission.in_progress == 3
    assert admission.in_progress == 2


async def test_the_retry_hint_grows_with_the_line_at_the_recent_pace(limits):
    admission = Admission()
    assert 1.0 <= admission.retry_after() <= 2.0  # nothing waiting: the floor
    for _ in range(2):
        await admission.enter()
    line = [asyncio.create_task(admission.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    # No set-up finished recently: the pace counts as one per second, and three
    # are waiting, so the hint is three to six seconds.
    assert 3.0 <= admission.retry_after() <= 6.0
    for _ in range(3):
        admission.leave()
    await asyncio.gather(*line)
