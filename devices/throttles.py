"""The login throttle: per client address and per username, and what it does
when its counts cannot be read.

Client addresses come from `client_address`: the TCP peer (REMOTE_ADDR) unless
TRUSTED_PROXY_COUNT proxies are configured, and then the X-Forwarded-For entry
the outermost trusted proxy appended. DRF's own `get_ident` follows the same
rule (settings set NUM_PROXIES to TRUSTED_PROXY_COUNT), so any throttle keyed by
address agrees with this one.
"""

import hashlib
import logging

from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)


def client_address(request) -> str | None:
    """The address of the client that made `request`, as the trusted proxies saw it.

    With TRUSTED_PROXY_COUNT = 0 (the default) X-Forwarded-For is ignored: anyone
    can send it. With N trusted proxies in front, each appends the address it
    received the request from, so the N-th entry from the right was written by
    the outermost trusted proxy and is the client's; entries further left came
    from the client and are not trusted.
    """
    return BaseThrottle().get_ident(request)


class LoginAddressThrottle(SimpleRateThrottle):
    """Login attempts per client address: the `login` rate (LOGIN_RATE_PER_ADDRESS)."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class LoginUsernameThrottle(SimpleRateThrottle):
    """Login attempts per username, from any address: the `login_username` rate
    (LOGIN_RATE_PER_USERNAME). The username is matched without case or
    surrounding spaces and keyed by its digest, so the key stays short whatever
    was sent. A body without a string username is not counted here (the
    serializer refuses it anyway)."""

    scope = "login_username"

    def get_cache_key(self, request, view):
        username = _submitted_username(request)
        if username is None:
            return None
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}


def _submitted_username(request) -> str | None:
    data = request.data
    username = data.get("username") if hasattr(data, "get") else None
    if not isinstance(username, str) or not username.strip():
        return None
    return username.strip().casefold()


class LoginRateThrottle(BaseThrottle):
    """Both login limits, counted in the default cache: Redis when configured,
    so every process shares the counts.

    The address limit is checked first. An attempt refused by it is not
    counted against the username, so an address that is over its limit cannot
    use up anyone's per-username allowance: locking a username out takes more
    attempts than one address may make, i.e. several addresses, each of them
    held to its own limit. An attempt the address limit lets through counts for
    the address even when the username limit then refuses it.

    When the cache cannot be reached, the attempt is let through and a warning
    logged: an outage of the cache must not lock every user out, and the
    passwords themselves are still checked.
    """

    def __init__(self):
        self.limits = [LoginAddressThrottle(), LoginUsernameThrottle()]
        self.refused_by = None

    def allow_request(self, request, view):
        try:
            for limit in self.limits:
                if not limit.allow_request(request, view):
                    self.refused_by = limit
                    return False
        except (RedisError, OSError) as error:
            logger.warning("login throttle not applied: its cache failed (%s: %s)", type(error).__name__, error)
        return True

    def wait(self):
        return self.refused_by.wait() if self.refused_by is not None else None
