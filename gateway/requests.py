"""The requests a device may send, each a thin call into a service or selector.

A handler returns the `result` of the `ok` reply (or sends its own reply and
returns None). Services raise ServiceError for anything the caller got wrong;
the consumer turns that into an `error` frame with the request's `ref`.
Writes run on the database thread pool, not on Channels' single shared
thread, so one slow write does not hold up every other connection's.
"""

import asyncio
import math
import time

from django.conf import settings
from django.utils import timezone

from conversations import services as conversation_services
from conversations.changelog import change_event
from conversations.payloads import message_payload
from conversations.selectors import changes_after
from conversations.validation import clean_non_negative_int, is_id
from core.db import on_db_pool, on_write_threads
from core.errors import InvalidInput, NotFound
from core.events import conversation_group
from delivery import services as delivery_services
from delivery.sync import plan_sync
from observability import metrics
from presence import live as presence
from presence.selectors import visible_presences
from presence.services import clean_status

from . import frames
from .log_reads import load_ranges

# Conversations whose log one query of a sync reads.
SYNC_READ_BATCH = 100


def conversation_id_of(frame) -> int:
    value = frame.get("conversation_id")
    if not is_id(value):
        raise InvalidInput("conversation_id must be a positive integer.", field="conversation_id")
    return value


async def ping(connection, frame):
    await connection.send_text(frames.pong(frame.get("ref"), timezone.now()))


async def send(connection, frame):
    result = await conversation_services.send_message_async(
        sender=connection.device.user,
        conversation_id=conversation_id_of(frame),
        client_msg_id=frame.get("client_msg_id"),
        body=frame.get("body"),
        reply_to_id=frame.get("reply_to"),
        device=connection.device,
    )
    await connection.typing.stop(result.conversation_id)
    return {
        "conversation_id": result.conversation_id,
        "message_id": result.message_id,
        "seq": result.seq,
        "client_msg_id": result.client_msg_id,
        "duplicate": not result.created,
    }


async def edit(connection, frame):
    message = await on_write_threads(conversation_services.edit_message)(
        actor=connection.device.user,
        conversation_id=conversation_id_of(frame),
        message_id=frame.get("message_id"),
        body=frame.get("body"),
        expected_version=frame.get("version"),
    )
    return {"message": message_payload(message)}


async def delete(connection, frame):
    message = await on_write_threads(conversation_services.delete_message)(
        actor=connection.device.user,
        conversation_id=conversation_id_of(frame),
        message_id=frame.get("message_id"),
    )
    return {"message": message_payload(message)}


async def _cursor_result(connection, frame, service):
    cursor = await on_write_threads(service)(
        user=connection.device.user,
        conversation_id=conversation_id_of(frame),
        seq=frame.get("seq"),
    )
    return {
        "conversation_id": cursor.conversation_id,
        "delivered_seq": cursor.delivered_seq,
        "read_seq": cursor.read_seq,
    }


async def read(connection, frame):
    return await _cursor_result(connection, frame, delivery_services.mark_read)


async def delivered(connection, frame):
    return await _cursor_result(connection, frame, delivery_services.mark_delivered)


def _cursors_of(frame) -> dict[int, int]:
    raw = frame.get("cursors")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise InvalidInput("cursors must be an object of conversation id -> seq.", field="cursors")
    cursors = {}
    for key, seq in raw.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 19):
            raise InvalidInput(f"cursors key {key!r} is not a conversation id.", field="cursors")
        cursors[int(key)] = clean_non_negative_int(seq, "cursors")
    return cursors


async def sync(connection, frame):
    """Catch up: send every change the device missed, then follow live.

    Each conversation's stream subscribes before it reads the log, and the
    streams drop what the device already has, so changes committed during the
    catch-up arrive exactly once. The `ok` reply comes after the catch-up frames.
    Under permessage-deflate, the catch-up's frames are compressed together
    (each may refer to the ones before it), not one by one.
    """
    cursors = _cursors_of(frame)
    with connection.hub.admission.admitted(), connection.outbound.catching_up():
        return await _sync(connection, cursors)


async def _sync(connection, cursors: dict[int, int]) -> dict:
    plan = await on_db_pool(plan_sync)(connection.user_id, cursors, settings.SYNC_MAX_CHANGES)
    for resume in plan.resumes:
        if resume.reset:
            metrics.RESETS.labels(resume.reset).inc()
            await connection.send_text(frames.reset(resume.conversation_id, resume.last_seq, resume.reset))
    # Subscribed together: the hub joins the groups it is not in yet in one batch.
    streams = await asyncio.gather(
        *(connection.track(r.conversation_id, r.cursor, until=r.until, start=False) for r in plan.resumes)
    )
    for conversation_id in set(connection.streams) - {r.conversation_id for r in plan.resumes}:
        connection.untrack(conversation_id)
    # Every stream is subscribed: one read of the log per batch of conversations
    # now misses nothing, since whatever commits after it arrives live (and
    # an earlier read serves only as log_reads.SharedReads.ranges says).
    subscribed_at = time.monotonic()
    needed_through, routed_since = _read_floors(connection.hub, plan.resumes)
    for start in range(0, len(streams), SYNC_READ_BATCH):
        batch = streams[start : start + SYNC_READ_BATCH]
        ranges = {stream.conversation_id: stream.first_read() for stream in batch}
        changes = await load_ranges(ranges, needed_through, subscribed_at=subscribed_at, routed_since=routed_since)
        for stream in batch:
            stream.start(changes.get(stream.conversation_id, []))
    await connection.release_held()
    await asyncio.gather(*(stream.wait() for stream in streams))
    return {
        "cursors": {str(cid): stream.cursor for cid, stream in sorted(connection.streams.items())},
        "reset": [r.conversation_id for r in plan.resumes if r.reset],
        "gone": plan.gone,
    }


def _read_floors(hub, resumes) -> tuple[dict[int, int], dict[int, float | None]]:
    """Per conversation of a sync that has just subscribed: how far a shared
    read of its log must reach, and since when it must have begun (None: only
    once subscribed). A stream that ends at the user's removal reads only
    changes the plan saw committed: any read that reaches it serves."""
    needed_through, routed_since = {}, {}
    for resume in resumes:
        if resume.until is not None:
            needed_through[resume.conversation_id], routed_since[resume.conversation_id] = resume.until, -math.inf
            continue
        since, dispatched_seq = hub.read_floor(conversation_group(resume.conversation_id))
        needed_through[resume.conversation_id] = max(resume.last_seq, dispatched_seq)
        routed_since[resume.conversation_id] = since
    return needed_through, routed_since


async def fetch(connection, frame):
    """A range of one conversation's log, for a device that saw a gap."""
    conversation_id = conversation_id_of(frame)
    after = clean_non_negative_int(frame.get("after_seq", 0), "after_seq")
    limit = frame.get("limit", settings.PAGE_SIZE_MAX)
    limit = clean_non_negative_int(limit, "limit") or 1
    page = await on_db_pool(changes_after)(connection.device.user, conversation_id, after=after, limit=limit)
    return {
        "conversation_id": conversation_id,
        "changes": [change_event(change).frame() for change in page.items],
        "has_more": page.has_more,
    }


async def set_presence(connection, frame):
    status = clean_status(frame.get("status"))
    await presence.set_status(connection.device, connection.connection_id, status)
    return {"status": status}


async def subscribe_presence(connection, frame):
    """Follow the presence of the users a client shows on screen, whatever the
    size of the conversations shared with them; replaces the previous list.
    Users the device may not see are left out of the answer, as unknown ones."""
    user_ids = frame.get("user_ids")
    limit = settings.PRESENCE_SUBSCRIBE_MAX
    if not isinstance(user_ids, list) or not all(is_id(u) for u in user_ids):
        raise InvalidInput("user_ids must be a list of user ids.", field="user_ids")
    if len(set(user_ids)) > limit:
        raise InvalidInput(f"At most {limit} users can be followed at once.", field="user_ids")
    visible = await on_db_pool(visible_presences)(connection.device.user, user_ids)
    await connection.follow_presence([p["user_id"] for p in visible])
    return {"presence": visible}


async def typing(connection, frame):
    """Typing in a conversation this device follows (after sync); never stored."""
    conversation_id = conversation_id_of(frame)
    if conversation_id not in connection.streams:
        raise NotFound("Conversation not found.")
    state = frame.get("state")
    if state == "start":
        await connection.typing.start(conversation_id)
    elif state == "stop":
        await connection.typing.stop(conversation_id)
    else:
        raise InvalidInput("state must be 'start' or 'stop'.", field="state")
    return {"conversation_id": conversation_id, "state": state}


HANDLERS = {
    "ping": ping,
    "sync": sync,
    "fetch": fetch,
    "send": send,
    "edit": edit,
    "delete": delete,
    "read": read,
    "delivered": delivered,
    "presence": set_presence,
    "presence.subscribe": subscribe_presence,
    "typing": typing,
}
