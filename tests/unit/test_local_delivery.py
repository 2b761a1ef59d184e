"""A server process's own publishes: its hub takes those of the groups it
follows directly, and the layer sends to every other member of the groups."""

import asyncio

from core import publish
from core.events import Event
from gateway.hub import Hub


class FakeLayer:
    def __init__(self):
        self.sent: list[tuple[list, str | None]] = []

    async def group_send_many(self, messages, skip_channel=None):
        self.sent.append(([group for group, _ in messages], skip_channel))


class FakeHub:
    channel = "specific.process!hub"

    def __init__(self, follows: set[str]):
        self.followed = follows
        self.taken: list[dict] = []

    def follows(self, group: str) -> bool:
        return group in self.followed

    def take(self, messages: list[dict]) -> None:
        self.taken.extend(messages)


def event(seq: int) -> Event:
    return Event(kind="message.created", payload={"seq": seq}, conversation_id=1, seq=seq)


async def test_the_loops_hub_takes_its_groups_messages_and_the_layer_skips_it(monkeypatch):
    layer = FakeLayer()
    monkeypatch.setattr(publish, "get_channel_layer", lambda: layer)
    hub = FakeHub(follows={"conversation.1"})
    publish.deliver_locally(hub)
    await publish.send_async(event(5), ["conversation.1", "user.9"])
    assert [(m["group"], m["seq"]) for m in hub.taken] == [("conversation.1", 5)]
    assert layer.sent == [(["conversation.1", "user.9"], hub.channel)]  # every other member still gets both


async def test_without_a_hub_on_the_loop_the_layer_sends_to_every_member(monkeypatch):
    layer = FakeLayer()
    monkeypatch.setattr(publish, "get_channel_layer", lambda: layer)
    await publish.send_async(event(5), ["conversation.1"])
    assert layer.sent == [(["conversation.1"], None)]


class Recording:
    def __init__(self):
        self.groups = set()
        self.delivered: list[int] = []
        self.device_id = 1

    async def deliver(self, message):
        await asyncio.sleep(0)  # a delivery may let other tasks run
        self.delivered.append(message["seq"])


async def test_the_hub_dispatches_what_it_takes_in_order():
    hub = Hub()
    connection = Recording()
    hub._groups["conversation.1"] = {connection}
    hub.take([{"group": "conversation.1", "seq": 1}, {"group": "conversation.1", "seq": 2}])
    hub.take([])
    hub.take([{"group": "conversation.1", "seq": 3}])
    while hub._local_dispatcher is not None:
        await asyncio.wait([hub._local_dispatcher])
    assert connection.delivered == [1, 2, 3]
    assert hub.follows("conversation.1") and not hub.follows("conversation.2")


class FakeLayerGroups:
    def __init__(self):
        self.joined: list[str] = []

    async def join(self, group):
        self.joined.append(group)

    def leave(self, group):
        pass


class Follower:
    def __init__(self):
        self.groups = set()
        self.device_id = 1

    async def deliver(self, message):
        pass


async def test_the_hub_knows_since_when_a_group_is_routed_here_and_what_it_dispatched(monkeypatch):
    """What a sync needs to tell whether an earlier read of the log serves it (Hub.read_floor)."""
    from gateway import hub as hub_module

    now = [10.0]
    monkeypatch.setattr(hub_module.time, "monotonic", lambda: now[0])
    hub = Hub()
    hub._layer_groups = FakeLayerGroups()
    first, second = Follower(), Follower()
    assert hub.read_floor("conversation.1") == (None, 0)
    await hub.subscribe("conversation.1", first)
    now[0] = 11.0
    await hub.subscribe("conversation.1", second)  # already routed: the first join's moment stands
    await hub.dispatch({"group": "conversation.1", "kind": "message.created", "seq": 4})
    await hub.dispatch({"group": "conversation.1", "kind": "batch", "events": [{"seq": 6}, {"seq": 5}]})
    await hub.dispatch({"group": "conversation.1", "kind": "typing", "seq": None})
    assert hub.read_floor("conversation.1") == (10.0, 6)
    hub.unsubscribe("conversation.1", first)
    hub.unsubscribe("conversation.1", second)
    assert hub.read_floor("conversation.1") == (None, 0)  # nobody follows it: forgotten

    await hub.subscribe("conversation.1", first)
    monkeypatch.setattr(hub, "_recover", lambda: asyncio.sleep(0))
    hub.layer_failed("receiving", ConnectionError("redis went away"))
    assert hub.read_floor("conversation.1")[0] is None  # messages may have been lost meanwhile


class HangsOnce:
    """A layer whose first send never returns (a Redis that stopped answering)."""

    def __init__(self):
        self.calls = 0
        self.sent: list[list[int]] = []
        self.hanging = asyncio.Event()

    async def group_send_many(self, messages, skip_channel=None):
        self.calls += 1
        if self.calls == 1:
            self.hanging.set()
            await asyncio.Event().wait()
        self.sent.append([message["seq"] for _, message in messages])


async def test_a_hung_publish_gives_way_to_the_conversations_next_change_after_the_timeout(monkeypatch):
    from concurrent.futures import Future

    from observability import metrics

    monkeypatch.setattr(publish, "PUBLISH_TIMEOUT_SECONDS", 0.1)
    layer = HangsOnce()
    monkeypatch.setattr(publish, "get_channel_layer", lambda: layer)
    errors_before = metrics.PUBLISH_ERRORS._value.get()
    first, second = Future(), Future()
    publish._publish_in_turn(event(1), ["conversation.1"], first)
    await layer.hanging.wait()
    publish._publish_in_turn(event(2), ["conversation.1"], second)  # waits behind the hung one
    await asyncio.wait_for(asyncio.wrap_future(second), 5)
    assert first.done()
    assert layer.sent == [[2]]  # the first was given up, the second went
    assert metrics.PUBLISH_ERRORS._value.get() == errors_before + 1
