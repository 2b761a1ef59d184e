"""Appending to a conversation's change log, the one place seqs are handed out.

`lock_conversation` takes the conversation's row lock (SELECT ... FOR UPDATE).
Holding it until commit makes the seqs of one conversation commit in the order
they were taken, with no gap: a device that has seen seq N has seen 1..N.
A global serial id does not have this property (id 105 can commit before 104).
"""

import json

from django.db import transaction

from core.errors import NotFound
from core.events import Event, conversation_group, dumps, user_group
from core.publish import publish_on_commit

from .models import Change, Conversation
from .validation import is_id


def lock_conversation(conversation_id: int) -> Conversation:
    """The conversation, row-locked until the surrounding transaction ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_conversation must run inside transaction.atomic")
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        # Marks this transaction's writes as the app's: the plain-SQL triggers on
        # messages (migration 0002) stand aside, since the app logs and publishes them.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('realtime.origin', 'app', true)")
    conversation = (
        Conversation.objects.select_for_update().filter(pk=conversation_id).first() if is_id(conversation_id) else None
    )
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def take_next_seq(conversation: Conversation) -> int:
    """Reserve the conversation's next seq; `conversation` must be locked."""
    conversation.last_seq += 1
    conversation.save(update_fields=["last_seq"])
    return conversation.last_seq


def record_change(
    conversation: Conversation,
    seq: int,
    kind: str,
    payload: dict,
    *,
    actor=None,
    message=None,
) -> Change:
    """Record the change at a seq taken with `take_next_seq` and publish it after commit."""
    if seq != conversation.last_seq:
        raise RuntimeError("record_change must use the seq just taken for this conversation")
    # Round-trip through JSON so the stored payload and the live frame agree exactly.
    stored_payload = json.loads(dumps(payload))
    change = Change.objects.create(
        conversation=conversation,
        seq=seq,
        kind=kind,
        payload=stored_payload,
        actor=actor,
        message=message,
    )
    publish_on_commit(change_event(change), groups_of(change))
    return change


def append_change(conversation: Conversation, kind: str, payload: dict, **options) -> Change:
    """Take the next seq and record the change at it (see `record_change`)."""
    return record_change(conversation, take_next_seq(conversation), kind, payload, **options)


def change_event(change: Change) -> Event:
    user = change.payload.get("user") if change.kind.startswith("member.") else None
    return Event(
        kind=change.kind,
        conversation_id=change.conversation_id,
        seq=change.seq,
        payload=change.payload,
        meta={"user_id": user["id"]} if user else {},
    )


def users_told_directly(change: Change) -> list[int]:
    """Users who must hear of a change even though they may not follow the
    conversation (yet, or any more): the members of a new conversation, a
    member just added or removed."""
    if change.kind == Change.Kind.CONVERSATION_CREATED:
        return sorted({member["user"]["id"] for member in change.payload.get("members", ())})
    if change.kind in (Change.Kind.MEMBER_ADDED, Change.Kind.MEMBER_REMOVED):
        return [change.payload["user"]["id"]]
    return []


def groups_of(change: Change) -> list[str]:
    """The channel-layer groups a change goes to: the one routing rule, used by
    the services' publishing and by the plain-SQL listener alike."""
    return [conversation_group(change.conversation_id), *(user_group(u) for u in users_told_directly(change))]
