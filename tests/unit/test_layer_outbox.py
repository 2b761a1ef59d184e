"""LayerOutbox: one group_send_many in flight per loop; what piles up meanwhile
goes together, in order; a failed send fails exactly the callers it carried."""

import asyncio

import pytest

from core.layer_outbox import LayerOutbox


class FakeLayer:
    def __init__(self):
        self.calls: list[list] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def group_send_many(self, messages, skip_channel=None):
        self.calls.append(list(messages))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")


def pair(n):
    return (f"g{n}", {"n": n})


async def test_a_send_on_a_quiet_loop_goes_at_once():
    layer = FakeLayer()
    layer.release.set()
    await LayerOutbox(layer).send([pair(1), pair(2)])
    assert layer.calls == [[pair(1), pair(2)]]


async def test_sends_made_while_one_is_in_flight_go_together_in_order():
    layer = FakeLayer()
    outbox = LayerOutbox(layer)
    first = asyncio.create_task(outbox.send([pair(1)]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.create_task(outbox.send([pair(n)])) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert layer.calls == [[pair(1)]] and not first.done()
    layer.release.set()
    await asyncio.gather(first, *later)
    assert layer.calls == [[pair(1)], [pair(2), pair(3), pair(4)]]


async def test_a_failed_send_fails_its_callers_and_the_next_batch_still_goes():
    layer = FakeLayer()
    outbox = LayerOutbox(layer)
    layer.fail_next = True
    first = asyncio.create_task(outbox.send([pair(1)]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.create_task(outbox.send([pair(2)]))
    await asyncio.sleep(0)
    layer.release.set()
    with pytest.raises(ConnectionError):
        await first
    await second
    assert layer.calls == [[pair(1)], [pair(2)]]


async def test_a_caller_that_stops_waiting_does_not_hold_up_the_others():
    layer = FakeLayer()
    outbox = LayerOutbox(layer)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(outbox.send([pair(1)]), 0.01)
    waiting = asyncio.create_task(outbox.send([pair(2)]))
    await asyncio.sleep(0)
    layer.release.set()
    await waiting
    assert layer.calls == [[pair(1)], [pair(2)]]  # the first still went out, before the second
