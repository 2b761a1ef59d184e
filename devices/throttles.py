"""The login throttle, and what it does when its counts cannot be read."""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)


class LoginRateThrottle(ScopedRateThrottle):
    """Login attempts per client address (the `login` rate), counted in the
    default cache: Redis when configured, so every process shares the counts.

    When that Redis cannot be reached, the attempt is let through and a
    warning logged: an outage of the cache must not lock every user out, and
    the passwords themselves are still checked."""

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as error:
            logger.warning("login throttle not applied: its cache failed (%s: %s)", type(error).__name__, error)
            return True
