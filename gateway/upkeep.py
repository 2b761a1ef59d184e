"""The hub's periodic work: closing connections whose heartbeat stopped,
refreshing group membership, reconciling streams with the log, and keeping
this server's devices present."""

import asyncio
import logging
import time

from django.conf import settings

from conversations.selectors import last_seqs
from core.db import on_db_pool
from devices.selectors import revoked_among
from presence import live as presence

from . import close_codes

logger = logging.getLogger(__name__)

GROUP_REFRESH_SECONDS = 3600

load_last_seqs = on_db_pool(last_seqs)
load_revoked = on_db_pool(revoked_among)


def start(hub) -> None:
    hub.spawn(sweep_heartbeats(hub))
    hub.spawn(refresh_groups(hub))
    hub.spawn(reconcile(hub))
    hub.spawn(keep_present(hub))


async def sweep_heartbeats(hub) -> None:
    """Close connections that sent nothing for longer than the heartbeat timeout."""
    timeout = settings.WS_HEARTBEAT_TIMEOUT
    while True:
        await asyncio.sleep(max(min(timeout / 4, 5.0), 0.05))
        now = time.monotonic()
        for connection in list(hub.connections):
            if now - connection.last_received > timeout:
                hub.spawn(connection.close(close_codes.HEARTBEAT_TIMEOUT, "heartbeat timeout"))


async def refresh_groups(hub) -> None:
    """channels-redis expires group membership after a day; join again well before."""
    while True:
        await asyncio.sleep(GROUP_REFRESH_SECONDS)
        try:
            await hub.rejoin_all()
        except Exception:
            logger.exception("refreshing group membership failed")


async def reconcile(hub) -> None:
    """Catch what the layer dropped: a lost event shows up as a gap only when the
    next one arrives, so every few seconds compare each followed conversation's
    last seq with the streams' cursors and refill the ones behind, and close
    the connections of devices revoked meanwhile."""
    while True:
        await asyncio.sleep(settings.WS_RECONCILE_SECONDS)
        connections = [c for c in list(hub.connections) if not c.closed]
        streams = [s for c in connections for s in c.streams.values() if s.live and not s.ended]
        try:
            latest = await load_last_seqs({s.conversation_id for s in streams}) if streams else {}
            # A lost "device revoked" event must not leave the device connected.
            revoked = await load_revoked({c.device_id for c in connections}) if connections else set()
        except Exception:
            logger.exception("reconciling streams failed")
            continue
        for stream in streams:
            if stream.cursor < latest.get(stream.conversation_id, 0):
                stream.refill("reconcile")
        for connection in connections:
            if connection.device_id in revoked:
                hub.spawn(connection.close(close_codes.DEVICE_REVOKED, "device revoked"))


async def keep_present(hub) -> None:
    """Refresh this server's connections in presence; expire those of dead servers."""
    while True:
        await asyncio.sleep(settings.PRESENCE_REFRESH_SECONDS)
        try:
            await presence.refresh([c.connection_id for c in hub.connections if not c.closed])
        except Exception:
            logger.exception("presence refresh failed")
