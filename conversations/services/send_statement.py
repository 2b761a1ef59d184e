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
    arguments = _arguments(message)
    with publish_in_line_after(message.conversation_id) as publish:
        _stored(message, _call(arguments), connection.alias, publish)


async def send_on_loop(message: Message) -> None:
    """`send` on the running loop's own connection (core/loop_db.py), outside
    any transaction: the statement commits by itself, and its change is
    published as it returns. It runs to the end even if the caller is
    cancelled (a device that went away): a committed send is published."""
    arguments = _arguments(message)
    await asyncio.shield(asyncio.ensure_future(_send_on_loop(message, arguments)))


async def _send_on_loop(message: Message, arguments: list) -> None:
    with publish_in_line_after_autocommit(message.conversation_id) as publish:
        async with loop_db.connection() as conn:
            cursor = await conn.execute(_SEND_SQL, arguments)
            row = await cursor.fetchone()
        _stored(message, row, "default", publish)


def _arguments(message: Message) -> list:
    if not is_id(message.conversation_id):
        raise NotFound("Conversation not found.")
    return [
        message.conversation_id,
        message.sender_id,
        message.sender_device_id,
        message.client_msg_id,
        message.body,
        message.reply_to_id,
        message.created_at,
    ]


def _stored(message: Message, row: tuple, alias: str, publish) -> None:
    """Take the statement's `row` into `message` and publish its change, or
    raise the refusal it reports."""
    outcome, message_id, seq, payload = row
    if outcome != "sent":
        if outcome == "bad_reply_to":
            raise InvalidInput("reply_to is not a message of this conversation.", field="reply_to")
        raise NotFound("Conversation not found.")  # none, or the sender is not a member: the same answer
    conversation_id = message.conversation_id
    message.pk, message.seq = message_id, seq
    message._state.adding = False  # stored, as after the ORM's save()
    message._state.db = alias
    change = ChangeFacts(
        conversation_id,
        seq,
        Change.Kind.MESSAGE_CREATED,
        # Django has psycopg hand jsonb over as text (its JSONField decodes);
        # the loop's connections use Django's adapters too.
        json.loads(payload) if isinstance(payload, str) else payload,
    )
    publish(change_event(change), groups_of(change))


def _call(arguments: list) -> tuple:
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(_SEND_SQL, arguments)
        return cursor.fetchone()
