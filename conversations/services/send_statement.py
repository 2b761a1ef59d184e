"""The send on PostgreSQL: one statement, `realtime_send_message` (migration 0003).

The ORM send (`messages._send`) holds the conversation's row lock through four
round trips and the Python between them; this holds it only inside
PostgreSQL. Outside a transaction the statement commits by itself; inside a
caller's, it runs in a savepoint (a retry's unique violation must not break
the caller's transaction) and publishes when that transaction commits.

Its change is published in its conversation's line like any other, from a
place taken before the statement (core.publish.publish_in_line_after): the
seq is not known until the statement returns.
"""

import json
from contextlib import nullcontext

from django.db import connection, transaction

from core.errors import InvalidInput, NotFound
from core.publish import publish_in_line_after

from ..changelog import change_event, groups_of
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
    if not is_id(conversation_id):
        raise NotFound("Conversation not found.")
    arguments = [
        conversation_id,
        message.sender_id,
        message.sender_device_id,
        message.client_msg_id,
        message.body,
        message.reply_to_id,
        message.created_at,
    ]
    with publish_in_line_after(conversation_id) as publish:
        outcome, message_id, seq, payload = _call(arguments)
        if outcome != "sent":
            if outcome == "bad_reply_to":
                raise InvalidInput("reply_to is not a message of this conversation.", field="reply_to")
            raise NotFound("Conversation not found.")  # none, or the sender is not a member: the same answer
        message.pk, message.seq = message_id, seq
        message._state.adding = False  # stored, as after the ORM's save()
        message._state.db = connection.alias
        change = Change(
            conversation_id=conversation_id,
            seq=seq,
            kind=Change.Kind.MESSAGE_CREATED,
            # Django has psycopg hand jsonb over as text (its JSONField decodes).
            payload=json.loads(payload) if isinstance(payload, str) else payload,
            actor_id=message.sender_id,
            message_id=message_id,
        )
        publish(change_event(change), groups_of(change))


def _call(arguments: list) -> tuple:
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(_SEND_SQL, arguments)
        return cursor.fetchone()
