"""Which channels receive from groups at all, so a lone process can skip
reading a group's members before every publish.

A publish through `group_send_many` first reads each group's members from
Redis, to send to every member but the publisher's own hub (which took the
event directly). With one server process there is never another member, yet
that read was a ninth of the server's time per message. Here every channel
that joins a group is registered first (a sorted set of channel names, scored
by when each was last renewed), and a publisher that finds no registered
channel but its own skips the members read for the next CHECK_SECONDS.

Why that is safe: a channel that registers waits WAIT_SECONDS (longer than
CHECK_SECONDS) before it joins any group. A publisher's "nobody else" holds
for CHECK_SECONDS from when it sent the read that found nobody, so it has
expired before any channel registered after that read is in a group: every
skipped read would have found no other member anyway. A registration not
renewed for TTL_SECONDS (its process died, or stalled that long) no longer
counts; a channel that keeps groups must renew more often than that (the
gateway's hub does, gateway/upkeep.py), and learns from `renew` when its
registration was lost (Redis restarted, or it stalled), so that it joins its
groups again, after the wait.
"""

import asyncio
import time

# How long a read that found no other receiver is trusted.
CHECK_SECONDS = 0.1
# How long a newly registered channel waits before joining groups: more than
# CHECK_SECONDS, with room for clocks that run at slightly different rates.
WAIT_SECONDS = 0.3
# A registration not renewed for this long is a dead process's.
TTL_SECONDS = 60.0
# How often a channel in groups renews its registration.
RENEW_SECONDS = 10.0

# Removes the registrations older than ARGV[2], then counts the others than ARGV[1].
_OTHER_RECEIVERS_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if ARGV[1] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    count = count - 1
end
return count
"""


class Receivers:
    """The registry of one channel layer (core.channel_layer), in the Redis
    shard that holds its key."""

    def __init__(self, layer):
        self.layer = layer
        self.key = f"{layer.prefix}:receivers"
        # Per channel registered from this process: (monotonic time from which it
        # may join groups, monotonic time of its last renewal).
        self._registered: dict[str, tuple[float, float]] = {}
        self._registering: dict[str, asyncio.Future] = {}
        # Channels whose registration a join found lost: the next `renew` reports it.
        self._lost: set[str] = set()
        # The last read that found no receiver but this channel: (channel, trusted until).
        self._alone: tuple[str | None, float] | None = None

    def _redis(self):
        return self.layer.connection(self.layer.consistent_hash(self.key))

    async def ready_to_join(self, channel: str) -> None:
        """Register `channel` unless it is (renewing it if due), and return
        once it may join groups: WAIT_SECONDS after its registration."""
        while True:
            registered = self._registered.get(channel)
            if registered is not None and time.monotonic() - registered[1] < RENEW_SECONDS:
                break
            pending = self._registering.get(channel)
            if pending is not None:
                await asyncio.shield(pending)  # then look again: registered, or failed and ours to try
                continue
            pending = self._registering[channel] = asyncio.get_running_loop().create_future()
            try:
                if await self._register(channel) and registered is not None:
                    self._lost.add(channel)  # for the channel's owner, whose renewal would miss it now
            finally:
                del self._registering[channel]
                pending.set_result(None)
        delay = self._registered[channel][0] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def renew(self, channel: str) -> bool:
        """Renew `channel`'s registration. True if it is new: never made from
        this process, lost by Redis, or not renewed for so long that others may
        have dropped it; or if a join since the last renewal found it so. A new
        registration may join groups only WAIT_SECONDS later (`ready_to_join`
        waits for that), and a channel that was in groups meanwhile may have
        missed what was published to them."""
        new = await self._register(channel)
        if channel in self._lost:
            self._lost.discard(channel)
            return True
        return new

    async def _register(self, channel: str) -> bool:
        """Add or renew the registration in Redis; True if it is new (see `renew`)."""
        self._forget_stale()
        added = await self._redis().zadd(self.key, {channel: time.time()})
        now = time.monotonic()
        known = self._registered.get(channel)
        if added or known is None:
            self._registered[channel] = (now + WAIT_SECONDS, now)
            return True
        self._registered[channel] = (known[0], now)
        return False

    async def any_other_than(self, channel: str | None) -> bool:
        """Whether a registered channel other than `channel` may be in a group:
        read from Redis at most every CHECK_SECONDS while the answer is no."""
        alone = self._alone
        if alone is not None and alone[0] == channel and time.monotonic() < alone[1]:
            return False
        sent_at = time.monotonic()
        others = await self._redis().eval(_OTHER_RECEIVERS_LUA, 1, self.key, channel or "", time.time() - TTL_SECONDS)
        self._alone = (channel, sent_at + CHECK_SECONDS) if others == 0 else None
        return others > 0

    def forget(self, channel: str) -> None:
        """Count `channel` as unregistered here (Redis may have lost it in an
        outage): its next join registers it anew, and waits."""
        self._registered.pop(channel, None)
        self._lost.discard(channel)  # its owner is recovering already

    def _forget_stale(self) -> None:
        """Forget the registrations this process stopped renewing for half
        their TTL: others may count them expired already (their clocks differ),
        so renewing one counts as registering anew."""
        now = time.monotonic()
        for channel, (_, renewed_at) in list(self._registered.items()):
            if now - renewed_at > TTL_SECONDS / 2:
                del self._registered[channel]
