"""The send on PostgreSQL: one statement, `realtime_send_message` (migration 0003).

The gateway runs it on the event loop's own connections (`send_on_loop`,
core/loop_db.py); the REST API and other synchronous callers through the ORM's
connection (`send`).

The ORM send (`messages._send`) holds the conversation's row lock through four
round trips and the Python between them; this holds it only inside
PostgreSQL. Outside a transaction the statement commits by itself; inside a
caller's, it runs in a savepoint (a retry's unique violation must not break
the caller's transaction) and publishes when that transaction commits.

Its change is published in its conversation's line like any other, from a
place taken before the statement (core.publish.publish_in_line_after): the
seq is not known until the statement returns.
"""

import asyncio
import json
from contextlib import nullcontext

from django.db import connection, transaction
from django.utils import timezone

from core import loop_db
from core.errors import InvalidInput, NotFound
from core.publish import publish_in_line_after, publish_in_line_after_autocommit

from ..changelog import ChangeFacts, change_event, groups_of
from ..models import Change, Message
from ..validation import is_id

_SEND_SQL = (
    "SELECT outcome, message_id, message_seq, change_payload FROM realtime_send_message(%s, %s, %s, %s, %s, %s, %s)"
)


def available() -> bool:
    return connection.vendor == "postgresql"


def send(message: Message) -> None:
    """Store and log the unsaved `message`, setting its id and seq, or raise as
    the ORM send does: NotFound for a conversation that does not exist or of
    which the sender is not an active member, InvalidInput for a reply_to
    outside it, IntegrityError for a client_msg_id the sender used before."""
    conversation_id = message.conversation_id
    arguments = _arguments(
        conversation_id,
        message.sender_id,
        message.sender_device_id,
        message.client_msg_id,
        message.body,
        message.reply_to_id,
        message.created_at,
    )
    with publish_in_line_after(conversation_id) as publish:
        message.pk, message.seq = _stored(conversation_id, _call(arguments), publish)
        message._state.adding = False  # stored, as after the ORM's save()
        message._state.db = connection.alias


async def send_on_loop(
    *, conversation_id, sender_id: int, device_id: int | None, client_msg_id: str, body: str, reply_to_id
) -> tuple[int, int]:
    """`send` on the running loop's own connection (core/loop_db.py), outside
    any transaction, from the message's fields: its (id, seq). The statement
    commits by itself, and its change is published as it returns. It runs to
    the end even if the caller is cancelled (a device that went away): a
    committed send is published."""
    arguments = _arguments(conversation_id, sender_id, device_id, client_msg_id, body, reply_to_id, timezone.now())
    return await asyncio.shield(asyncio.ensure_future(_send_on_loop(conversation_id, arguments)))


async def _send_on_loop(conversation_id: int, arguments: list) -> tuple[int, int]:
    with publish_in_line_after_autocommit(conversation_id) as publish:
        async with loop_db.connection() as conn:
            cursor = await conn.execute(_SEND_SQL, arguments)
            row = await cursor.fetchone()
        return _stored(conversation_id, row, publish)


def _arguments(conversation_id, *fields) -> list:
    if not is_id(conversation_id):
        raise NotFound("Conversation not found.")
    return [conversation_id, *fields]


def _stored(conversation_id: int, row: tuple, publish) -> tuple[int, int]:
    """The stored message's (id, seq) from the statement's `row`, its change
    published; or the refusal the row reports, raised."""
    outcome, message_id, seq, payload = row
    if outcome != "sent":
        if outcome == "bad_reply_to":
            raise InvalidInput("reply_to is not a message of this conversation.", field="reply_to")
        raise NotFound("Conversation not found.")  # none, or the sender is not a member: the same answer
    change = ChangeFacts(
        conversation_id,
        seq,
        Change.Kind.MESSAGE_CREATED,
        # Django has psycopg hand jsonb over as text (its JSONField decodes);
        # the loop's connections use Django's adapters too.
        json.loads(payload) if isinstance(payload, str) else payload,
    )
    publish(change_event(change), groups_of(change))
    return message_id, seq


def _call(arguments: list) -> tuple:
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(_SEND_SQL, arguments)
        return cursor.fetchone()
