"""Presence on a running server: connections going online and offline, the
periodic refresh that keeps them alive, expiry of devices whose server died,
and the coalesced broadcast of users' presence to their contacts.

A presence change goes to the groups of the user's conversations (and the
user's own group), not to each contact's group: a user in one conversation of
a hundred members costs one channel-layer message, not a hundred, so a hundred
devices coming online cost a hundred messages, not ten thousand. A contact
who shares several conversations gets the event once: it carries an id, and
each connection drops an id it has already delivered."""

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from django.conf import settings

from realtime_sync.coalesce import Coalescer
from realtime_sync.db import on_db_pool
from conversations.models import Membership
from realtime_sync.events import Event, conversation_group, user_group
from realtime_sync.publish import send_async

from . import services
from .models import UserPresence
from .selectors import presence_payload

logger = logging.getLogger(__name__)


@database_sync_to_async
def _snapshot(user_id: int):
    presence = UserPresence.objects.filter(user_id=user_id).first()
    conversations = Membership.objects.active().filter(user_id=user_id).values_list("conversation_id", flat=True)
    return presence_payload(user_id, presence), list(conversations)


async def _broadcast(user_id: int, _value) -> None:
    """Send the user's presence as stored now. A flap inside one window sends one
    event with where it ended, even if that is where it started: with several
    processes, only the database knows what contacts last heard."""
    payload, conversations = await _snapshot(user_id)
    event = Event(kind="presence.updated", payload=payload, meta={"event_id": uuid.uuid4().hex})
    await send_async(event, [user_group(user_id), *(conversation_group(c) for c in conversations)])


changes = Coalescer(lambda: settings.PRESENCE_COALESCE_SECONDS, _broadcast)


def announce(user_id: int) -> None:
    changes.submit(user_id, None)


async def connected(connection) -> None:
    if await on_db_pool(services.device_online)(device=connection.device, connection_id=connection.connection_id):
        announce(connection.user_id)


async def disconnected(connection) -> None:
    if await on_db_pool(services.device_offline)(device=connection.device, connection_id=connection.connection_id):
        announce(connection.user_id)


async def set_status(connection, status) -> None:
    changed = await on_db_pool(services.device_online)(
        device=connection.device, connection_id=connection.connection_id, status=status
    )
    if changed:
        announce(connection.user_id)


async def keep_alive(hub) -> None:
    """Refresh this server's connections and expire devices of servers that died."""
    while True:
        await asyncio.sleep(settings.PRESENCE_REFRESH_SECONDS)
        try:
            ids = [c.connection_id for c in hub.connections if not c.closed]
            if ids:
                await on_db_pool(services.refresh)(ids)
            for user_id in await on_db_pool(services.expire_stale)(timeout=settings.PRESENCE_TIMEOUT):
                announce(user_id)
        except Exception:
            logger.exception("presence refresh failed")
