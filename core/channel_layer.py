"""channels-redis with a bounded connection pool that waits instead of failing.

redis-py's default pool raises `MaxConnectionsError` the moment all of its
connections are taken, so a burst (a reconnect storm joining thousands of
groups, a flood of publishes) turns into errors. Here each process's pool is
`BlockingConnectionPool`: at most `pool_max_connections` connections, and a
caller that finds them all busy waits up to `pool_timeout` seconds for one.
The same holds for Redis reached through Sentinel.

Joining a group is one round trip (channels-redis makes two).

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

logger = logging.getLogger(__name__)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master behind Sentinel, through a pool that waits when it is full:
    SentinelConnectionPool finds the master, BlockingConnectionPool hands out
    (and waits for) its connections."""


class BoundedRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, pool_max_connections: int = 50, pool_timeout: float = 5.0, **kwargs):
        self.pool_max_connections = pool_max_connections
        self.pool_timeout = pool_timeout
        super().__init__(*args, **kwargs)

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
        one round trip instead of two: every connection joins groups of its
        own, so a connect storm makes thousands of these."""
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        group_key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(transaction=False) as pipe:
            pipe.zadd(group_key, {channel: time.time()})
            pipe.expire(group_key, self.group_expiry)
            await pipe.execute()

    async def _clean_receive_backup(self, index, channel):
        try:
            await super()._clean_receive_backup(index, channel)
        except (RedisError, OSError) as error:
            logger.info("clearing a received message from the backup queue failed (%s)", error)
