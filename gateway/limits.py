"""Per-connection and per-user request limits: token buckets.

Every request (ping included) takes a token from its connection's bucket and
from its user's bucket in this process. A request that finds either empty is
answered `rate_limited` with `details.retry_after` and not run. Each refusal
also takes a token from the connection's strike bucket; a connection that
empties that one too (it keeps on sending past the limit) is closed with 4430.
"""

import time

from django.conf import settings


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; starts full."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_seconds(self) -> float:
        """How long until the next token."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


def connection_bucket() -> TokenBucket:
    return TokenBucket(settings.WS_RATE_PER_CONNECTION, settings.WS_RATE_BURST_PER_CONNECTION)


def user_bucket() -> TokenBucket:
    return TokenBucket(settings.WS_RATE_PER_USER, settings.WS_RATE_BURST_PER_USER)


def strike_bucket() -> TokenBucket:
    """Refusals a connection may collect before it is closed: a burst of
    WS_RATE_STRIKES, refilled at one a second."""
    return TokenBucket(1.0, settings.WS_RATE_STRIKES)


class UserBuckets:
    """One bucket per user with connections in this process, dropped with the
    user's last connection."""

    def __init__(self):
        self._buckets: dict[int, list] = {}  # user id -> [bucket, connections]

    def attach(self, user_id: int) -> TokenBucket:
        entry = self._buckets.get(user_id)
        if entry is None:
            entry = self._buckets[user_id] = [user_bucket(), 0]
        entry[1] += 1
        return entry[0]

    def detach(self, user_id: int) -> None:
        entry = self._buckets.get(user_id)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._buckets[user_id]

    def connections_of(self, user_id: int) -> int:
        entry = self._buckets.get(user_id)
        return entry[1] if entry else 0
