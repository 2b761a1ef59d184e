"""LayerGroups: the hub's group joins and leaves, gathered into batches, with a
fake layer that records its calls and can be held or made to fail."""

import asyncio

import pytest

from gateway.layer_groups import MAX_GROUPS_PER_CALL, LayerGroups

WAIT_SECONDS = 5


class RecordingLayer:
    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.failure: Exception | None = None

    async def group_add_many(self, groups, channel):
        await self._call("add", groups)

    async def group_discard_many(self, groups, channel):
        await self._call("discard", groups)

    async def _call(self, kind, groups):
        self.calls.append((kind, list(groups)))
        self.entered.set()
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure


class OneByOneLayer:
    """A layer with channels' base API only (as the in-memory layer)."""

    def __init__(self):
        self.calls = []

    async def group_add(self, group, channel):
        self.calls.append(("add", group))

    async def group_discard(self, group, channel):
        self.calls.append(("discard", group))


def groups_for(layer, wanted: set, failures: list | None = None) -> LayerGroups:
    return LayerGroups(
        layer,
        "specific.process!hub",
        is_wanted=wanted.__contains__,
        on_failure=lambda doing, error: (failures if failures is not None else []).append((doing, error)),
    )


async def test_joins_asked_while_a_batch_is_in_flight_go_together_in_the_next():
    layer, wanted = RecordingLayer(), {"a", "b", "c", "d"}
    groups = groups_for(layer, wanted)
    layer.gate.clear()
    first = asyncio.create_task(groups.join("a"))
    await asyncio.wait_for(layer.entered.wait(), WAIT_SECONDS)
    others = [asyncio.create_task(groups.join(group)) for group in ("b", "c", "d", "b")]
    await asyncio.sleep(0)
    assert not first.done() and not any(task.done() for task in others)  # not joined yet: still waiting
    layer.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *others), WAIT_SECONDS)
    assert layer.calls == [("add", ["a"]), ("add", ["b", "c", "d"])]
    assert groups.joined == {"a", "b", "c", "d"}
    await groups.join("a")  # already in: no round trip
    assert len(layer.calls) == 2


async def test_a_batch_follows_what_is_wanted_when_it_runs():
    layer, wanted = RecordingLayer(), {"kept", "gone"}
    groups = groups_for(layer, wanted)
    await groups.join("kept")
    await groups.join("gone")
    layer.calls.clear()
    # Let go and followed again before the batch runs: no change at all.
    wanted.discard("kept")
    groups.leave("kept")
    wanted.add("kept")
    # Followed and let go again: never joined.
    wanted.add("brief")
    joining = asyncio.create_task(groups.join("brief"))
    await asyncio.sleep(0)  # it asks to join
    wanted.discard("brief")
    groups.leave("brief")
    # Let go for good.
    wanted.discard("gone")
    groups.leave("gone")
    await asyncio.wait_for(joining, WAIT_SECONDS)
    assert layer.calls == [("discard", ["gone"])]
    assert groups.joined == {"kept"}


async def test_a_failed_join_is_reported_and_its_joiners_go_on():
    layer, wanted, failures = RecordingLayer(), {"a", "b"}, []
    groups = groups_for(layer, wanted, failures)
    layer.failure = ConnectionError("redis is gone")
    await asyncio.wait_for(asyncio.gather(groups.join("a"), groups.join("b")), WAIT_SECONDS)
    assert [doing for doing, _ in failures] == ["joining 2 group(s)"]
    assert groups.joined == set()
    layer.failure = None
    await groups.rejoin_all(["a", "b", "not-wanted"])  # what the hub's recovery does
    assert layer.calls[-1] == ("add", ["a", "b"])
    assert groups.joined == {"a", "b"}


async def test_a_failed_rejoin_raises_for_the_recovery_to_retry():
    layer = RecordingLayer()
    groups = groups_for(layer, {"a"})
    layer.failure = ConnectionError("redis is gone")
    with pytest.raises(ConnectionError):
        await groups.rejoin_all(["a"])
    assert groups.joined == set()


async def test_a_failed_leave_is_reported_and_forgotten():
    layer, wanted, failures = RecordingLayer(), {"a"}, []
    groups = groups_for(layer, wanted, failures)
    await groups.join("a")
    layer.failure = ConnectionError("redis is gone")
    wanted.clear()
    groups.leave("a")
    await asyncio.wait_for(groups._worker, WAIT_SECONDS)
    assert [doing for doing, _ in failures] == ["leaving 1 group(s)"]
    assert groups.joined == set()  # the membership expires in Redis by itself


async def test_a_rejoin_of_many_groups_goes_in_slices():
    layer = RecordingLayer()
    wanted = {f"g{i}" for i in range(2 * MAX_GROUPS_PER_CALL + 1)}
    groups = groups_for(layer, wanted)
    await groups.rejoin_all(sorted(wanted))
    assert [len(names) for _, names in layer.calls] == [MAX_GROUPS_PER_CALL, MAX_GROUPS_PER_CALL, 1]
    assert groups.joined == wanted


async def test_a_layer_without_batch_calls_is_called_group_by_group():
    layer, wanted = OneByOneLayer(), {"a", "b"}
    groups = groups_for(layer, wanted)
    await asyncio.gather(groups.join("a"), groups.join("b"))
    wanted.clear()
    groups.leave("a")
    groups.leave("b")
    await asyncio.wait_for(groups._worker, WAIT_SECONDS)
    assert layer.calls == [("add", "a"), ("add", "b"), ("discard", "a"), ("discard", "b")]
