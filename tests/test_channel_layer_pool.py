"""The channel layer's Redis pool is bounded and waits when it is full."""

import asyncio
import time

import pytest
from django.conf import settings
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ConnectionError

from core import channel_layer
from core.channel_layer import BoundedRedisChannelLayer

pytestmark = pytest.mark.redis


def layer(**bounds) -> BoundedRedisChannelLayer:
    return BoundedRedisChannelLayer(hosts=[{"address": settings.REDIS_URL}], prefix="pooltest", **bounds)


async def test_many_callers_share_a_small_pool_by_waiting():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    channel = await bounded.new_channel()
    groups = [f"crowd{i}" for i in range(100)]
    await asyncio.gather(*(bounded.group_add(group, channel) for group in groups))
    await asyncio.gather(*(bounded.group_send(group, {"type": "hello", "n": n}) for n, group in enumerate(groups)))
    received = [await asyncio.wait_for(bounded.receive(channel), 10) for _ in groups]
    pool = bounded.connection(0).connection_pool
    assert isinstance(pool, BlockingConnectionPool) and pool.max_connections == 2
    assert sorted(message["n"] for message in received) == list(range(100))
    await asyncio.gather(*(bounded.group_discard(group, channel) for group in groups))
    await bounded.flush()


async def test_a_caller_that_waits_too_long_gets_a_connection_error():
    bounded = layer(pool_max_connections=1, pool_timeout=0.2)
    pool = bounded.connection(0).connection_pool
    held = await pool.get_connection()
    try:
        with pytest.raises(ConnectionError, match="No connection available"):
            await bounded.group_add("waits", "pooltest.specific.x!y")
    finally:
        await pool.release(held)
    await bounded.group_add("waits", "pooltest.specific.x!y")  # free again: it goes through
    await bounded.group_discard("waits", "pooltest.specific.x!y")
    await bounded.flush()


async def test_group_add_joins_and_sets_the_expiry_as_channels_redis_does():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    channel = await bounded.new_channel()
    await bounded.group_add("expiring", channel)
    redis = bounded.connection(0)
    key = bounded._group_key("expiring")
    assert await redis.zscore(key, channel) is not None
    assert 0 < await redis.ttl(key) <= bounded.group_expiry
    await bounded.group_send("expiring", {"type": "hello"})
    assert (await asyncio.wait_for(bounded.receive(channel), 10))["type"] == "hello"
    await bounded.group_discard("expiring", channel)
    await bounded.flush()


async def test_group_send_many_delivers_every_message_in_order_to_every_member():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    first, second = await bounded.new_channel(), await bounded.new_channel()
    for group in ("many-a", "many-b"):
        await bounded.group_add(group, first)
    await bounded.group_add("many-b", second)
    # Descending numbers: sorted by their bytes (equal scores) they would come out ascending.
    messages = [(("many-a", "many-b")[i % 2], {"type": "m", "n": 39 - i}) for i in range(40)]
    messages.append(("many-nobody", {"type": "m", "n": 99}))  # a group without members: nothing
    await bounded.group_send_many(messages[:20])
    await bounded.group_send_many(messages[20:])  # a second call's messages come after the first's
    got_first = [(await asyncio.wait_for(bounded.receive(first), 10))["n"] for _ in range(40)]
    got_second = [(await asyncio.wait_for(bounded.receive(second), 10))["n"] for _ in range(20)]
    assert got_first == [39 - i for i in range(40)]
    assert got_second == [39 - i for i in range(1, 40, 2)]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(bounded.receive(second), 0.2)
    for group in ("many-a", "many-b"):
        await bounded.group_discard(group, first)
    await bounded.group_discard("many-b", second)
    await bounded.flush()


async def test_group_send_many_skips_the_senders_own_channel():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    bounded.brpop_timeout = 1
    own, other = await bounded.new_channel(), await bounded.new_channel()
    await bounded.group_add("skip-both", own)
    await bounded.group_add("skip-both", other)
    await bounded.group_add("skip-own-only", own)
    await bounded.group_send_many(
        [("skip-both", {"type": "m", "n": 1}), ("skip-own-only", {"type": "m", "n": 2})], skip_channel=own
    )
    # The two channels share their process's key: without the skip, a message
    # for both and one for `own` would wait there.
    key = bounded.prefix + bounded.non_local_name(own)
    [waiting] = await bounded.connection(0).zrange(key, 0, -1)
    assert bounded.deserialize(waiting)["__asgi_channel__"] == [other]
    assert [m["n"] for m in await bounded.receive_many(other)] == [1]
    for group in ("skip-both", "skip-own-only"):
        await bounded.group_discard(group, own)
    await bounded.group_discard("skip-both", other)
    await bounded.flush()


async def test_receive_many_hands_over_everything_waiting_in_order():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    bounded.brpop_timeout = 1
    hub = await bounded.new_channel()
    await bounded.group_add("waiting", hub)
    await bounded.group_send_many([("waiting", {"type": "m", "n": 39 - i}) for i in range(30)])
    await bounded.group_send("waiting", {"type": "m", "n": -1})  # channels-redis's own send, after
    got = await bounded.receive_many(hub, limit=20)
    got += await bounded.receive_many(hub, limit=20)
    assert [m["n"] for m in got] == [39 - i for i in range(30)] + [-1]
    assert all("__asgi_channel__" not in m for m in got)
    assert await bounded.receive_many(hub) == []  # nothing came within the blocking pop's timeout
    later = asyncio.create_task(bounded.receive_many(hub))  # waits for the first
    await bounded.group_send_many([("waiting", {"type": "m", "n": 100})])
    assert [m["n"] for m in await asyncio.wait_for(later, 5)] == [100]
    await bounded.group_discard("waiting", hub)
    await bounded.flush()


async def test_group_add_many_and_group_discard_many_join_and_leave_every_group():
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    channel = await bounded.new_channel()
    groups = ["batch-a", "batch-b", "batch-c"]
    await bounded.group_add_many(groups, channel)
    redis = bounded.connection(0)
    for group in groups:
        key = bounded._group_key(group)
        assert await redis.zscore(key, channel) is not None
        assert 0 < await redis.ttl(key) <= bounded.group_expiry
    await bounded.group_send("batch-b", {"type": "hello"})
    assert (await asyncio.wait_for(bounded.receive(channel), 10))["type"] == "hello"
    await bounded.group_discard_many(groups[:2], channel)
    assert [await redis.zscore(bounded._group_key(group), channel) is not None for group in groups] == [
        False,
        False,
        True,
    ]
    await bounded.flush()


async def test_group_send_many_reads_members_in_slices_and_drops_expired_ones(monkeypatch):
    monkeypatch.setattr(channel_layer, "MEMBERS_PER_SCRIPT_CALL", 2)
    bounded = layer(pool_max_connections=2, pool_timeout=10)
    live, stale = await bounded.new_channel(), await bounded.new_channel()
    groups = [f"slices-{i}" for i in range(5)]
    await bounded.group_add_many(groups, live)
    redis = bounded.connection(0)
    # A member that stopped renewing its membership longer ago than the group expiry.
    await redis.zadd(bounded._group_key("slices-3"), {stale: time.time() - bounded.group_expiry - 10})
    await bounded.group_send_many([(group, {"type": "m", "group": group}) for group in groups])
    got = [(await asyncio.wait_for(bounded.receive(live), 10))["group"] for _ in groups]
    assert got == groups
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(bounded.receive(stale), 0.2)
    assert await redis.zscore(bounded._group_key("slices-3"), stale) is None
    await bounded.group_discard_many(groups, live)
    await bounded.flush()


async def test_replies_are_parsed_by_hiredis():
    """The pure-Python parser cost more than Redis itself for a flush's many replies."""
    from redis._parsers import _AsyncHiredisParser

    bounded = layer()
    redis = bounded.connection(0)
    await redis.ping()
    connection = await redis.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _AsyncHiredisParser)
    finally:
        await redis.connection_pool.release(connection)
    await bounded.flush()
