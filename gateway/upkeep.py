"""The hub's periodic work: closing connections whose heartbeat stopped,
refreshing group membership and the hub's registration as a receiver,
reconciling streams with the log, and keeping this server's devices present."""

import asyncio
import logging
import time

from django.conf import settings

from conversations.selectors import last_seqs
from core.db import on_db_pool
from core.layer_receivers import RENEW_SECONDS
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
    if hasattr(hub.layer, "renew_receiver"):
        hub.spawn(keep_registered(hub))
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


class RegistrationLost(Exception):
    """Redis no longer had the hub's registration as a receiver."""


async def keep_registered(hub) -> None:
    """Renew the hub's channel as a receiver (core.layer_receivers). If the
    registration was lost (Redis restarted, or the process stalled for most
    of its TTL), a lone process elsewhere may have skipped this one's groups:
    recover as after an outage (join every group again, after the wait, and
    refill the streams from the log)."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            lost = await hub.layer.renew_receiver(hub.channel)
        except Exception as error:
            hub.layer_failed("renewing the registration", error)
            continue
        if lost:
            hub.layer_failed("renewing the registration", RegistrationLost("it was registered anew"))


async def reconcile(hub) -> None:
    """Catch what the layer dropped: a lost event shows up as a gap only when the
    next one arrives, so every few seconds compare each followed conversation's
    last seq with the streams' cursors and refill the ones behind (see
    `streams_behind`), and close the connections of devices revoked meanwhile."""
    seen_before: dict[int, int] = {}
    while True:
        await asyncio.sleep(settings.WS_RECONCILE_SECONDS)
        connections = [c for c in list(hub.connections) if not c.closed]
        streams = live_streams(connections)
        try:
            latest = await load_last_seqs({s.conversation_id for s in streams}) if streams else {}
            # A lost "device revoked" event must not leave the device connected.
            revoked = await load_revoked({c.device_id for c in connections}) if connections else set()
        except Exception:
            logger.exception("reconciling streams failed")
            continue
        for stream in streams_behind(streams, latest, seen_before):
            stream.refill("reconcile", known_through=latest[stream.conversation_id])
        seen_before = latest
        for connection in connections:
            if connection.device_id in revoked:
                hub.spawn(connection.close(close_codes.DEVICE_REVOKED, "device revoked"))


def live_streams(connections) -> list:
    return [s for c in connections for s in c.streams.values() if s.live and not s.ended]


def streams_behind(streams, latest: dict[int, int], seen_before: dict[int, int]) -> list:
    """The streams to refill from the log, given each conversation's last seq now
    (`latest`) and one round ago (`seen_before`), and clearing each stream's
    `heard_live` mark for the next round.

    A stream behind the last seq of one round ago is missing a change that
    committed at least a round ago: refill it. A stream behind only the last
    seq of now is refilled only if it heard no live event since the last
    round: on a busy process the newest changes are still on their way live
    (seconds, when it is saturated), and reading the log for them on every
    stream at once adds to the load that delays them. A quiet stream (a
    dropped event, a write the in-memory layer does not carry across
    processes) is still refilled within one round."""
    behind = []
    for stream in streams:
        heard_live, stream.heard_live = stream.heard_live, False
        last_seq = latest.get(stream.conversation_id, 0)
        if stream.cursor >= last_seq:
            continue
        if stream.cursor < seen_before.get(stream.conversation_id, 0) or not heard_live:
            behind.append(stream)
    return behind


async def refill_after_outage(hub) -> None:
    """Once the layer is back: refill every live stream behind its conversation's
    last seq. Told how far the log goes, the streams of a conversation that
    stood at the same cursor share one read, instead of one read per device
    through the database pool (the slowest devices waited seconds for theirs).
    If the last seqs cannot be read, every stream reads for itself."""
    streams = live_streams(c for c in list(hub.connections) if not c.closed)
    try:
        latest = await load_last_seqs({s.conversation_id for s in streams}) if streams else {}
    except Exception as error:
        logger.warning("reading last seqs after the outage failed (%s); every stream refills", error)
        for stream in streams:
            stream.refill("recovery")
        return
    for stream in streams:
        last_seq = latest.get(stream.conversation_id, 0)
        if stream.cursor < last_seq:
            stream.refill("recovery", known_through=last_seq)


async def keep_present(hub) -> None:
    """Refresh this server's connections in presence; expire those of dead servers."""
    while True:
        await asyncio.sleep(settings.PRESENCE_REFRESH_SECONDS)
        try:
            await presence.refresh([c.connection_id for c in hub.connections if not c.closed])
        except Exception:
            logger.exception("presence refresh failed")
