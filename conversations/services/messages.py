"""Sending, editing and deleting messages.

Sends are idempotent on (sender, client_msg_id): a retry after a lost reply
returns the original message. Edits name the version they were based on; a
stale one is refused with the current state, never merged. A delete leaves a
tombstone in the log and wins over any later edit.
"""

from dataclasses import dataclass
from typing import NamedTuple

from django.db import IntegrityError
from django.utils import timezone

from core import loop_db
from core.db import on_write_threads
from core.errors import (
    ClientMsgIdConflict,
    InvalidInput,
    MessageDeleted,
    NotFound,
    PermissionDenied,
    VersionConflict,
)

from ..access import active_membership, require_active_member
from ..changelog import (
    append_change,
    lock_and_take_next_seq,
    lock_conversation,
    logged_by_caller,
    record_change,
    redact_logged_bodies,
)
from ..models import Change, Message, MessageEdit
from ..payloads import message_payload
from ..validation import clean_body, clean_client_msg_id, is_id, is_integer
from . import send_statement


@dataclass(frozen=True)
class SendResult:
    message: Message
    created: bool  # False when this was a retry of an earlier send


class Sent(NamedTuple):
    """What the gateway tells a sender of its send (`send_message_async`): no
    model instance is built for it on the event loop."""

    conversation_id: int
    message_id: int
    seq: int
    client_msg_id: str
    created: bool  # False when this was a retry of an earlier send

    @classmethod
    def of(cls, result: SendResult) -> "Sent":
        message = result.message
        return cls(message.conversation_id, message.pk, message.seq, message.client_msg_id, result.created)


def send_message(*, sender, conversation_id: int, client_msg_id, body, reply_to_id=None, device=None) -> SendResult:
    client_msg_id, body = _checked(client_msg_id, body, reply_to_id)
    message = Message(
        conversation_id=conversation_id,
        sender=sender,
        sender_device=device,
        client_msg_id=client_msg_id,
        body=body,
        reply_to_id=reply_to_id,
    )
    try:
        if send_statement.available():
            send_statement.send(message)
        else:
            _send(message)
        return SendResult(message=message, created=True)
    except IntegrityError as error:
        return _earlier_send(sender, conversation_id, client_msg_id, error)


async def send_message_async(
    *, sender, conversation_id: int, client_msg_id, body, reply_to_id=None, device=None
) -> Sent:
    """`send_message` for the event loop: on PostgreSQL its statement runs on
    the loop's own connections (core/loop_db.py), else on the write threads."""
    if not loop_db.enabled():
        result = await on_write_threads(send_message)(
            sender=sender,
            conversation_id=conversation_id,
            client_msg_id=client_msg_id,
            body=body,
            reply_to_id=reply_to_id,
            device=device,
        )
        return Sent.of(result)
    client_msg_id, body = _checked(client_msg_id, body, reply_to_id)
    try:
        message_id, seq = await send_statement.send_on_loop(
            conversation_id=conversation_id,
            sender_id=sender.pk,
            device_id=device.pk if device is not None else None,
            client_msg_id=client_msg_id,
            body=body,
            reply_to_id=reply_to_id,
        )
        return Sent(conversation_id, message_id, seq, client_msg_id, True)
    except IntegrityError as error:
        return Sent.of(await on_write_threads(_earlier_send)(sender, conversation_id, client_msg_id, error))


def _checked(client_msg_id, body, reply_to_id) -> tuple[str, str]:
    """A send's input checked: its client_msg_id and body, cleaned."""
    client_msg_id = clean_client_msg_id(client_msg_id)
    body = clean_body(body)
    if reply_to_id is not None and not is_id(reply_to_id):
        raise InvalidInput("reply_to must be a message id.", field="reply_to")
    return client_msg_id, body


def _earlier_send(sender, conversation_id: int, client_msg_id: str, error: IntegrityError) -> SendResult:
    """A retry: (sender, client_msg_id) is unique, so the first send's row
    refused this one and the whole transaction, seq included, rolled back."""
    original = Message.objects.filter(sender=sender, client_msg_id=client_msg_id).first()
    if original is None:
        raise error
    return _retry_result(original, conversation_id)


@logged_by_caller()
def _send(message: Message) -> None:
    """The send's transaction, through the ORM (on PostgreSQL, send_statement.py
    does the same in one statement). Everything after the first statement runs under
    the conversation's row lock, and every send to the conversation waits for
    it, so it is kept to a few statements: take the lock and the seq, check
    the membership (after the lock, so a removal that committed meanwhile is
    seen), insert the message (its unique client_msg_id is the idempotency
    check), insert the change."""
    conversation_id = message.conversation_id
    message.seq = lock_and_take_next_seq(conversation_id)
    require_active_member(message.sender, conversation_id)
    reply_to_id = message.reply_to_id
    if reply_to_id is not None and not Message.objects.filter(pk=reply_to_id, conversation_id=conversation_id).exists():
        raise InvalidInput("reply_to is not a message of this conversation.", field="reply_to")
    message.save(force_insert=True)
    record_change(
        conversation_id,
        message.seq,
        Change.Kind.MESSAGE_CREATED,
        message_payload(message),
        actor=message.sender,
        message=message,
    )


def _retry_result(original: Message, conversation_id: int) -> SendResult:
    if original.conversation_id != conversation_id:
        raise ClientMsgIdConflict(field="client_msg_id")
    return SendResult(message=original, created=False)


def _message_in(conversation, message_id) -> Message:
    message = Message.objects.filter(pk=message_id, conversation=conversation).first() if is_id(message_id) else None
    if message is None:
        raise NotFound("Message not found.")
    return message


@logged_by_caller()
def edit_message(
    *, actor, conversation_id: int, message_id, body, expected_version, as_moderator: bool = False
) -> Message:
    """Replace a message's body if `expected_version` is still current.

    Sending the body the message already has succeeds without a new version, so
    a retried edit is harmless.
    """
    body = clean_body(body)
    if not is_integer(expected_version):
        raise InvalidInput("version must be an integer.", field="version")
    conversation = lock_conversation(conversation_id)
    if not as_moderator:
        active_membership(actor, conversation_id)
    message = _message_in(conversation, message_id)
    if message.is_deleted:
        raise MessageDeleted(current_version=message.version)
    if not as_moderator and message.sender_id != actor.pk:
        raise PermissionDenied("Only the sender may edit a message.")
    if message.body == body:
        return message
    if expected_version != message.version:
        raise VersionConflict(current_version=message.version, current_body=message.body)

    MessageEdit.objects.create(message=message, version=message.version, body=message.body, edited_by=actor)
    message.body = body
    message.version += 1
    message.edited_at = timezone.now()
    message.save(update_fields=["body", "version", "edited_at"])
    append_change(
        conversation,
        Change.Kind.MESSAGE_EDITED,
        {**message_payload(message), "edited_by": actor.pk},
        actor=actor,
        message=message,
    )
    return message


@logged_by_caller()
def delete_message(*, actor, conversation_id: int, message_id, as_moderator: bool = False) -> Message:
    """Turn a message into a tombstone: body and edit history are erased.

    The sender may delete their message; the conversation's owner and admins
    may delete any. Deleting a deleted message changes nothing.
    """
    conversation = lock_conversation(conversation_id)
    membership = None if as_moderator else active_membership(actor, conversation_id)
    message = _message_in(conversation, message_id)
    if membership is not None and message.sender_id != actor.pk and not membership.can_manage:
        raise PermissionDenied("Only the sender or the conversation's owner and admins may delete a message.")
    if message.is_deleted:
        return message

    message.edits.all().delete()
    redact_logged_bodies(message.pk)
    message.body = ""
    message.version += 1
    message.deleted_at = timezone.now()
    message.save(update_fields=["body", "version", "deleted_at"])
    append_change(
        conversation,
        Change.Kind.MESSAGE_DELETED,
        {**message_payload(message), "deleted_by": actor.pk},
        actor=actor,
        message=message,
    )
    return message
