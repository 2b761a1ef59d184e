"""Presence on a running server: devices' connections going online and
offline, the periodic refresh that keeps them alive, expiry of devices whose
server died, and the coalesced broadcast of users' presence to their contacts.
It knows devices and connection ids, not connections: the gateway calls it.

A presence change goes to the groups of the user's conversations (and the
user's own group), not to each contact's group: a user in one conversation of
a hundred members costs one channel-layer message, not a hundred, so a hundred
devices coming online cost a hundred messages, not ten thousand. A contact
who shares several conversations gets the event once: it carries an id, and
each connection drops an id it has already delivered."""

import logging
import uuid

from django.conf import settings

from conversations.models import Membership
from core.coalesce import Coalescer
from core.db import on_db_pool
from core.events import Event, conversation_group, user_group
from core.publish import send_async

from . import services
from .models import UserPresence
from .selectors import presence_payload

logger = logging.getLogger(__name__)


@on_db_pool
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


async def connected(device, connection_id: str) -> None:
    if await on_db_pool(services.device_online)(device=device, connection_id=connection_id):
        announce(device.user_id)


async def disconnected(device, connection_id: str) -> None:
    if await on_db_pool(services.device_offline)(device=device, connection_id=connection_id):
        announce(device.user_id)


async def set_status(device, connection_id: str, status) -> None:
    if await on_db_pool(services.device_online)(device=device, connection_id=connection_id, status=status):
        announce(device.user_id)


async def refresh(connection_ids) -> None:
    """Keep this server's connections online, and take offline the devices of
    servers that stopped refreshing theirs (they died). The gateway calls this
    every PRESENCE_REFRESH_SECONDS."""
    if connection_ids:
        await on_db_pool(services.refresh)(list(connection_ids))
    for user_id in await on_db_pool(services.expire_stale)(timeout=settings.PRESENCE_TIMEOUT):
        announce(user_id)
