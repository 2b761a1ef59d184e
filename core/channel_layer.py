"""channels-redis with a bounded connection pool that waits instead of failing.

redis-py's default pool raises `MaxConnectionsError` the moment all of its
connections are taken, so a burst (a reconnect storm joining thousands of
groups, a flood of publishes) turns into errors. Here each process's pool is
`BlockingConnectionPool`: at most `pool_max_connections` connections, and a
caller that finds them all busy waits up to `pool_timeout` seconds for one.
The same holds for Redis reached through Sentinel.

Joining or leaving many groups is one round trip for all (channels-redis
makes two per join, one per leave); publishing to many groups, two for all
(`group_send_many`); receiving what waits for the
gateway's hub, one (`receive_many`).

It also keeps a Redis outage out of the log's tracebacks: after each receive,
channels-redis fires a task that pops the message from its backup queue, and
when Redis dies under that task nobody retrieves its error ("Task exception was
never retrieved"). Losing that pop costs at most a duplicate delivery to the
hub, which the streams drop by seq.
"""

import logging
import time

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from observability import metrics

from .layer_receivers import Receivers

logger = logging.getLogger(__name__)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master behind Sentinel, through a pool that waits when it is full:
    SentinelConnectionPool finds the master, BlockingConnectionPool hands out
    (and waits for) its connections."""


class BoundedRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, pool_max_connections: int = 50, pool_timeout: float = 5.0, **kwargs):
        self.pool_max_connections = pool_max_connections
        self.pool_timeout = pool_timeout
        self._last_score = 0.0  # of the last message group_send_many sent
        super().__init__(*args, **kwargs)
        self.receivers = Receivers(self)

    def create_pool(self, index):
        host = dict(self.hosts[index])
        bounds = {"max_connections": self.pool_max_connections, "timeout": self.pool_timeout}
        if "address" in host:
            return BlockingConnectionPool.from_url(host.pop("address"), **bounds, **host)
        master_name = host.pop("master_name")
        sentinel = Sentinel(host.pop("sentinels"), sentinel_kwargs=host.pop("sentinel_kwargs", None))
        return BlockingSentinelConnectionPool(master_name, sentinel, **bounds, **host)

    async def group_add(self, group, channel):
        """channels-redis's group_add (ZADD, then EXPIRE on the group's key) in
        one round trip instead of two."""
        await self.group_add_many([group], channel)

    async def group_add_many(self, groups, channel) -> None:
        """`group_add` of the channel to each group, in one round trip per
        Redis shard: every connection joins groups of its own, so a connect
        storm asks for thousands of joins at once (gateway.layer_groups
        gathers them). The channel registers as a receiver first, and the
        first join waits a moment after that (core.layer_receivers)."""
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self.receivers.ready_to_join(channel)
        now = time.time()
        for index, shard_groups in self._by_shard(groups).items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for group in shard_groups:
                    group_key = self._group_key(group)
                    pipe.zadd(group_key, {channel: now})
                    pipe.expire(group_key, self.group_expiry)
                await pipe.execute()

    async def renew_receiver(self, channel: str) -> bool:
        """Renew the channel's registration as a receiver (core.layer_receivers):
        a channel in groups must, every RENEW_SECONDS. True if it was lost, or
        never made: publishes may have skipped the channel meanwhile."""
        return await self.receivers.renew(channel)

    def forget_receiver(self, channel: str) -> None:
        """After an outage: the channel's next join registers it anew (Redis
        may have lost the registration) and waits before joining."""
        self.receivers.forget(channel)

    async def group_discard_many(self, groups, channel) -> None:
        """`group_discard` of the channel from each group, in one round trip per Redis shard."""
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        for index, shard_groups in self._by_shard(groups).items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for group in shard_groups:
                    pipe.zrem(self._group_key(group), channel)
                await pipe.execute()

    def _by_shard(self, groups) -> dict[int, list[str]]:
        """The distinct groups, in order, by the index of the Redis shard that holds them."""
        by_shard: dict[int, list[str]] = {}
        for group in dict.fromkeys(groups):
            assert self.require_valid_group_name(group), "Group name not valid"
            by_shard.setdefault(self.consistent_hash(group), []).append(group)
        return by_shard

    async def group_send_many(self, messages: list[tuple[str, dict]], skip_channel: str | None = None) -> None:
        """`group_send` of each (group, message), in order, to every member but
        `skip_channel` (the sender's own hub, which took them directly): one script call
        per Redis shard reads every group's members, one delivers every
        message (in slices of a few hundred groups or deliveries, so no call
        holds Redis long). channels-redis's group_send makes four round trips
        per group, and a presence flush or a burst of publishes sends to
        hundreds of groups at once.

        A channel pops its messages by score (equal scores would come out
        sorted by their bytes), so every message this process sends is scored
        at least a microsecond after the one before: a channel receives them
        in the order they were sent.

        When no channel but `skip_channel` receives from any group (one server
        process), there is nobody to send to, and no members to read
        (core.layer_receivers)."""
        if not messages:
            return
        if not await self.receivers.any_other_than(skip_channel):
            metrics.LAYER_LONE_PUBLISHES.inc()
            return
        now = time.time()
        members = await self._members_of([group for group, _ in messages], now)
        deliveries: dict[int, _Deliveries] = {}
        for group, message in messages:
            channels = [channel for channel in members[group] if channel != skip_channel]
            if not channels:
                continue
            by_shard, message_for, capacity_of = self._map_channel_keys_to_connection(channels, message)
            score = self._next_score()
            for index, keys in by_shard.items():
                shard = deliveries.setdefault(index, _Deliveries())
                for key in keys:
                    shard.add(key, score, message_for[key], capacity_of[key])
        # Messages past their expiry go first, as group_send drops them.
        expired_before = int(now) - int(self.expiry)
        over_capacity = 0
        for index, shard in deliveries.items():
            for keys, args in shard.slices(DELIVERIES_PER_SCRIPT_CALL):
                over_capacity += await self.connection(index).eval(
                    _GROUP_SEND_MANY_LUA, len(keys), *keys, expired_before, self.expiry, *args
                )
        if over_capacity:
            logger.info("%d channel(s) over capacity in a group send; the message was dropped for them", over_capacity)

    def _next_score(self) -> float:
        self._last_score = max(time.time(), self._last_score + 1e-6)
        return self._last_score

    async def _members_of(self, groups: list[str], now: float) -> dict[str, list[str]]:
        """Each group's channels (expired ones removed first, as group_send
        does), in one script call per Redis shard and slice of groups: a
        presence flush asks for thousands of groups, and a pipeline of two
        commands per group cost more to build in redis-py than Redis took to
        run it."""
        members: dict[str, list[str]] = {}
        expired_before = int(now) - self.group_expiry
        for index, shard_groups in self._by_shard(groups).items():
            for start in range(0, len(shard_groups), MEMBERS_PER_SCRIPT_CALL):
                some = shard_groups[start : start + MEMBERS_PER_SCRIPT_CALL]
                keys = [self._group_key(group) for group in some]
                found = await self.connection(index).eval(_GROUP_MEMBERS_LUA, len(keys), *keys, expired_before)
                for group, names in zip(some, found, strict=True):
                    members[group] = [name.decode("utf8") for name in names]
        return members

    async def receive_many(self, channel: str, limit: int = 100) -> list[dict]:
        """The messages waiting for a process-local channel (up to `limit`), in
        the order they were sent; if there are none, waits for the first (at
        most the layer's blocking-pop timeout, then returns []).

        One round trip while messages are waiting, where channels-redis's
        receive makes four per message (its backup-queue script, the pop, the
        backup and the backup's cleaning). Without the backup queue, a receiver
        cancelled between the pop and its handling loses what it popped: right
        for a reader whose messages are doorbells backed by a log (the
        gateway's hub), not for a general consumer. The channel must be one
        that nothing else in this process receives from: its process's
        channels share one Redis key."""
        assert "!" in channel, "receive_many reads a process-local channel"
        local = self.non_local_name(channel)
        key = self.prefix + local
        connection = self.connection(self.consistent_hash(local))
        popped = await connection.zpopmin(key, limit)
        if not popped:
            found = await connection.bzpopmin(key, timeout=self.brpop_timeout)
            if found is None:
                return []
            popped = [(found[1], found[2])]
        messages = []
        for member, _score in popped:
            message = self.deserialize(member)
            recipients = message.pop("__asgi_channel__", channel)
            if channel == recipients or channel in recipients:
                messages.append(message)
        return messages

    async def _clean_receive_backup(self, index, channel):
        try:
            await super()._clean_receive_backup(index, channel)
        except (RedisError, OSError) as error:
            logger.info("clearing a received message from the backup queue failed (%s)", error)


# Groups whose members one script call reads: one call blocks Redis while it
# runs, so a flush of thousands of groups goes in slices.
MEMBERS_PER_SCRIPT_CALL = 500

# Each group's members (KEYS), after removing those that joined before ARGV[1]
# and did not renew (channels-redis's group expiry).
_GROUP_MEMBERS_LUA = """
local members = {}
for i=1,#KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return members
"""

# Deliveries one script call makes (see MEMBERS_PER_SCRIPT_CALL).
DELIVERIES_PER_SCRIPT_CALL = 500

# channels-redis's group send script, for many messages: first drop each
# channel's (KEYS) messages scored before ARGV[1], then, for each delivery of
# four arguments after ARGV[2] (the index of its channel in KEYS, its score,
# the message, the channel's capacity), add the message unless the channel is
# at capacity, and renew the channel's expiry (ARGV[2]). Returns how many
# deliveries found their channel at capacity.
_GROUP_SEND_MANY_LUA = """
for i=1,#KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
end
local over_capacity = 0
for i=3,#ARGV,4 do
    local key = KEYS[tonumber(ARGV[i])]
    if redis.call('ZCOUNT', key, '-inf', '+inf') < tonumber(ARGV[i + 3]) then
        redis.call('ZADD', key, ARGV[i + 1], ARGV[i + 2])
        redis.call('EXPIRE', key, ARGV[2])
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


class _Deliveries:
    """The deliveries of one group_send_many to one Redis shard, as the send
    script's arguments: channel keys, and four arguments per delivery."""

    def __init__(self):
        self._deliveries: list[tuple[str, float, bytes, int]] = []

    def add(self, key: str, score: float, message: bytes, capacity: int) -> None:
        self._deliveries.append((key, score, message, capacity))

    def slices(self, size: int):
        """(keys, args) of each call, `size` deliveries at most, in order."""
        for start in range(0, len(self._deliveries), size):
            index_of: dict[str, int] = {}
            args: list = []
            for key, score, message, capacity in self._deliveries[start : start + size]:
                index = index_of.setdefault(key, len(index_of) + 1)  # Lua counts from 1
                args += (index, score, message, capacity)
            yield list(index_of), args
