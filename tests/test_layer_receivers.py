"""A lone receiver publishes without reading its groups' members, and never
misses a channel that joins meanwhile (core.layer_receivers). Each layer
instance stands for a server process: two instances with one prefix share
one registry, as two processes sharing one Redis do."""

import asyncio
import time
import uuid

import pytest
from django.conf import settings

from core import layer_receivers
from core.channel_layer import BoundedRedisChannelLayer
from gateway import upkeep
from observability import metrics

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix():
    return f"receivers-{uuid.uuid4().hex[:8]}"


def process(prefix: str) -> BoundedRedisChannelLayer:
    made = BoundedRedisChannelLayer(hosts=[{"address": settings.REDIS_URL}], prefix=prefix)
    made.brpop_timeout = 1
    return made


class MemberReads:
    """Counts a layer's reads of group members."""

    def __init__(self, layer, monkeypatch):
        self.count = 0
        read = layer._members_of

        async def counted(*args):
            self.count += 1
            return await read(*args)

        monkeypatch.setattr(layer, "_members_of", counted)


def lone_publishes() -> float:
    return metrics.LAYER_LONE_PUBLISHES._value.get()


async def test_a_lone_receiver_publishes_without_reading_members(prefix, monkeypatch):
    one = process(prefix)
    hub = await one.new_channel()
    await one.group_add("room", hub)
    reads = MemberReads(one, monkeypatch)
    before = lone_publishes()
    for n in range(3):
        await one.group_send_many([("room", {"type": "m", "n": n})], skip_channel=hub)
    assert reads.count == 0
    assert lone_publishes() == before + 3
    await one.flush()


async def test_a_channel_that_joins_later_gets_the_very_next_publish(prefix, monkeypatch):
    one, two = process(prefix), process(prefix)
    hub_one, hub_two = await one.new_channel(), await two.new_channel()
    await one.group_add("room", hub_one)
    reads = MemberReads(one, monkeypatch)
    await one.group_send_many([("room", {"type": "m", "n": 0})], skip_channel=hub_one)
    assert reads.count == 0  # alone, and trusted for CHECK_SECONDS from now

    started = time.monotonic()
    await two.group_add("room", hub_two)  # a second process's first join waits that out
    assert time.monotonic() - started >= layer_receivers.WAIT_SECONDS

    await one.group_send_many([("room", {"type": "m", "n": 1})], skip_channel=hub_one)
    assert reads.count == 1
    assert [m["n"] for m in await asyncio.wait_for(two.receive_many(hub_two), 5)] == [1]
    later = time.monotonic()
    await two.group_add("another-room", hub_two)  # only the first join waits
    assert time.monotonic() - later < layer_receivers.WAIT_SECONDS
    await one.flush()


async def test_a_registration_not_renewed_within_its_ttl_counts_as_gone(prefix, monkeypatch):
    one = process(prefix)
    hub = await one.new_channel()
    await one.group_add("room", hub)
    registry = one.connection(0)
    dead = f"{prefix}.specific.dead!x"
    await registry.zadd(one.receivers.key, {dead: time.time() - layer_receivers.TTL_SECONDS - 1})
    reads = MemberReads(one, monkeypatch)
    await one.group_send_many([("room", {"type": "m"})], skip_channel=hub)
    assert reads.count == 0
    assert await registry.zscore(one.receivers.key, dead) is None  # and it was removed

    alive = f"{prefix}.specific.alive!x"
    await registry.zadd(one.receivers.key, {alive: time.time()})
    await asyncio.sleep(layer_receivers.CHECK_SECONDS)  # the last answer is no longer trusted
    await one.group_send_many([("room", {"type": "m"})], skip_channel=hub)
    assert reads.count == 1
    await one.flush()


async def test_a_publisher_without_a_channel_of_its_own_skips_only_when_nobody_receives(prefix, monkeypatch):
    listener, server = process(prefix), process(prefix)
    reads = MemberReads(listener, monkeypatch)
    await listener.group_send_many([("room", {"type": "m", "n": 0})])
    assert reads.count == 0
    hub = await server.new_channel()
    await server.group_add("room", hub)
    await listener.group_send_many([("room", {"type": "m", "n": 1})])
    assert reads.count == 1
    assert [m["n"] for m in await asyncio.wait_for(server.receive_many(hub), 5)] == [1]
    await server.flush()


async def test_renewing_reports_a_lost_registration_and_the_next_join_waits_again(prefix):
    one = process(prefix)
    hub = await one.new_channel()
    await one.group_add("room", hub)
    assert await one.renew_receiver(hub) is False
    await one.connection(0).delete(one.receivers.key)  # as a restarted Redis forgot it
    assert await one.renew_receiver(hub) is True
    started = time.monotonic()
    await one.group_add("room", hub)
    assert time.monotonic() - started >= layer_receivers.WAIT_SECONDS * 0.9
    await one.flush()


async def test_a_loss_a_join_finds_while_renewing_is_reported_by_the_next_renewal(prefix):
    one = process(prefix)
    hub = await one.new_channel()
    await one.group_add("room", hub)
    await one.connection(0).delete(one.receivers.key)  # Redis lost it, unnoticed so far
    ready_at, _ = one.receivers._registered[hub]
    one.receivers._registered[hub] = (ready_at, time.monotonic() - layer_receivers.RENEW_SECONDS)  # renewal due
    started = time.monotonic()
    await one.group_add("another-room", hub)  # the join renews, finds it gone, and waits
    assert time.monotonic() - started >= layer_receivers.WAIT_SECONDS * 0.9
    assert await one.renew_receiver(hub) is True  # the hub learns it, and recovers
    assert await one.renew_receiver(hub) is False
    await one.flush()


async def test_after_an_outage_the_next_join_registers_anew_and_waits(prefix):
    one = process(prefix)
    hub = await one.new_channel()
    await one.group_add("room", hub)
    await one.connection(0).delete(one.receivers.key)
    one.forget_receiver(hub)  # what the hub does when the layer fails
    started = time.monotonic()
    await one.group_add("room", hub)
    assert time.monotonic() - started >= layer_receivers.WAIT_SECONDS
    assert await one.connection(0).zscore(one.receivers.key, hub) is not None
    await one.flush()


async def test_concurrent_first_joins_register_once_and_all_wait(prefix, monkeypatch):
    one = process(prefix)
    hub = await one.new_channel()
    renewals = 0
    register = one.receivers._register

    async def counted(channel):
        nonlocal renewals
        renewals += 1
        return await register(channel)

    monkeypatch.setattr(one.receivers, "_register", counted)
    started = time.monotonic()
    await asyncio.gather(*(one.group_add(f"room{i}", hub) for i in range(5)))
    assert time.monotonic() - started >= layer_receivers.WAIT_SECONDS
    assert renewals == 1
    await one.flush()


class HubThatRenews:
    """What upkeep.keep_registered needs of a hub."""

    def __init__(self, layer, channel):
        self.layer = layer
        self.channel = channel
        self.failures: list[tuple[str, Exception]] = []
        self.failed = asyncio.Event()

    def layer_failed(self, doing: str, error: Exception) -> None:
        self.failures.append((doing, error))
        self.failed.set()


async def test_the_hub_recovers_when_its_registration_was_lost(prefix, monkeypatch):
    monkeypatch.setattr(upkeep, "RENEW_SECONDS", 0.05)
    one = process(prefix)
    hub_channel = await one.new_channel()
    await one.group_add("room", hub_channel)
    hub = HubThatRenews(one, hub_channel)
    renewing = asyncio.create_task(upkeep.keep_registered(hub))
    try:
        await asyncio.sleep(0.2)  # a few renewals of a registration Redis keeps
        assert hub.failures == []
        await one.connection(0).delete(one.receivers.key)
        await asyncio.wait_for(hub.failed.wait(), 5)
        [(doing, error)] = hub.failures
        assert doing == "renewing the registration" and isinstance(error, upkeep.RegistrationLost)
    finally:
        renewing.cancel()
    await one.flush()
