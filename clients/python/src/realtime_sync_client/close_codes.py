"""Close codes of protocol v1 (docs/protocol.md §15) and what the client does on each.

Only three codes end the client: they mean the same credentials or the same
page will never be let in (4401, 4403) or the device is gone for good (4410).
Every other close, codes a proxy invents and 1006 (no close frame) included,
is followed by a reconnect with backoff, as the protocol asks.
"""

UNAUTHORIZED = 4401
FORBIDDEN_ORIGIN = 4403
HEARTBEAT_TIMEOUT = 4408
DEVICE_REVOKED = 4410
TOO_FAR_BEHIND = 4429
RATE_LIMITED = 4430
TOO_MANY_CONNECTIONS = 4431
INTERNAL_ERROR = 4500
GOING_AWAY = 4503

#: Closes after which reconnecting with the same token cannot succeed.
FINAL = frozenset({UNAUTHORIZED, FORBIDDEN_ORIGIN, DEVICE_REVOKED})


def reconnects(code: int | None) -> bool:
    """Whether a connection closed with `code` (None: never opened, or lost
    without a close frame) should be followed by another attempt."""
    return code not in FINAL
