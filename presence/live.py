"""Presence on a running server: devices' connections going online and
offline, the periodic refresh that keeps them alive, expiry of devices whose
server died, and the coalesced broadcast of users' presence to their contacts.
It knows devices and connection ids, not connections: the gateway calls it.

A presence change goes to the groups of the user's small conversations (up to
PRESENCE_LIVE_MAX_MEMBERS members), to the connections that subscribed to the
user, and to the user's own group, not to each contact's group: a user in one
conversation of fifty members costs one channel-layer message, not fifty. A
contact who shares several conversations gets the event once: it carries an
id, and each connection drops an id it has already delivered."""

import logging
import uuid
from collections import defaultdict

from django.conf import settings

from core.coalesce import BatchCoalescer
from core.db import on_db_pool
from core.events import Event, conversation_group, presence_group, user_group
from core.publish import send_batches_async

from . import services
from .selectors import live_presence_routes

logger = logging.getLogger(__name__)


@on_db_pool
def _routes(user_ids):
    return live_presence_routes(user_ids, settings.PRESENCE_LIVE_MAX_MEMBERS)


async def _broadcast(batch: dict) -> None:
    """Send the presence, as stored now, of every user announced in one window.

    A flap inside the window sends one event with where it ended, even if that
    is where it started: with several processes, only the database knows what
    contacts last heard. Each event goes to the user's own devices, to the
    connections subscribed to the user, and to the user's conversations small
    enough for live presence; each group gets the window's events in one layer
    message, so a storm of N users coming online in one conversation costs it
    one message, not N."""
    payloads, conversations = await _routes(list(batch))
    events_by_group: dict[str, list[Event]] = defaultdict(list)
    for user_id, payload in payloads.items():
        event = Event(kind="presence.updated", payload=payload, meta={"event_id": uuid.uuid4().hex})
        groups = [user_group(user_id), presence_group(user_id), *map(conversation_group, conversations[user_id])]
        for group in groups:
            events_by_group[group].append(event)
    await send_batches_async(events_by_group)


changes = BatchCoalescer(lambda: settings.PRESENCE_COALESCE_SECONDS, _broadcast, name="presence")


def announce(user_id: int) -> None:
    changes.submit(user_id, None)


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
