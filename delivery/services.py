"""Moving receipt cursors: delivered (devices' cumulative acks) and read.

Cursors only move forward (under a row lock, so two devices racing cannot move
one back), never past the conversation's last seq, and reading implies
delivery. A cursor that moved is broadcast after commit to the conversation (coalesced,
see live.py), which reaches the user's other devices and the other members.
"""

from django.db import transaction
from django.utils import timezone

from conversations.access import active_membership
from conversations.validation import clean_non_negative_int

from .live import publish_receipt_on_commit
from .models import ReceiptCursor


def mark_read(*, user, conversation_id: int, seq) -> ReceiptCursor:
    return _advance(user, conversation_id, seq, read=True)


def mark_delivered(*, user, conversation_id: int, seq) -> ReceiptCursor:
    return _advance(user, conversation_id, seq, read=False)


@transaction.atomic
def _advance(user, conversation_id, seq, *, read: bool) -> ReceiptCursor:
    seq = clean_non_negative_int(seq, "seq")
    conversation = active_membership(user, conversation_id).conversation
    seq = min(seq, conversation.last_seq)
    ReceiptCursor.objects.get_or_create(user=user, conversation=conversation)
    # The row lock orders racing devices, so a smaller seq can never win.
    cursor = ReceiptCursor.objects.select_for_update().get(user=user, conversation=conversation)
    now = timezone.now()
    changed = []
    if seq > cursor.delivered_seq:
        cursor.delivered_seq, cursor.delivered_at = seq, now
        changed += ["delivered_seq", "delivered_at"]
    if read and seq > cursor.read_seq:
        cursor.read_seq, cursor.read_at = seq, now
        changed += ["read_seq", "read_at"]
    if changed:
        cursor.updated_at = now
        cursor.save(update_fields=[*changed, "updated_at"])
        publish_receipt_on_commit(cursor)
    return cursor
