"""What readiness checks: the database and the channel layer's Redis answer.

Each check returns None when all is well, or a short reason. They are bounded
by HEALTH_CHECK_TIMEOUT_SECONDS so a probe answers in time even when a service
hangs rather than refuses (the probe itself would otherwise time out, and say
less).
"""

import asyncio

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # back to the pool: a probe holds no connection between calls


async def database() -> str | None:
    return await _bounded(database_sync_to_async(_select_one, thread_sensitive=False)())


def uses_redis() -> bool:
    return hasattr(get_channel_layer(), "connection")


async def redis() -> str | None:
    """PING through the channel layer's own connection pool (Sentinel included);
    None as well when the layer is not Redis (nothing to check)."""
    if not uses_redis():
        return None
    return await _bounded(get_channel_layer().connection(0).ping())


async def _bounded(awaitable) -> str | None:
    try:
        await asyncio.wait_for(awaitable, settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {settings.HEALTH_CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as error:
        return " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return None
