"""Reads on receipts: a message's delivered/read status for its sender."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from conversations.access import active_membership
from conversations.models import Membership, Message
from conversations.selectors import message_for
from core.errors import PermissionDenied

from .models import ReceiptCursor


@dataclass(frozen=True)
class MessageReceipts:
    message_id: int
    seq: int
    recipients: int
    delivered_to: list  # users, by id
    read_by: list


def message_receipts(user, conversation_id, message_id) -> MessageReceipts:
    """Who of the other current members has the message delivered and read.

    Counted from the per-member cursors (a cursor at or past the message's seq),
    so no per-message rows are written. Only the sender may ask.
    """
    message = message_for(user, conversation_id, message_id)
    if message.sender_id != user.pk:
        raise PermissionDenied("Only the sender can see a message's receipts.")
    recipients = list(
        Membership.objects.active()
        .filter(conversation_id=conversation_id)
        .exclude(user_id=user.pk)
        .values_list("user_id", flat=True)
    )
    cursors = ReceiptCursor.objects.filter(
        conversation_id=conversation_id, user_id__in=recipients, delivered_seq__gte=message.seq
    ).values_list("user_id", "read_seq")
    delivered_to, read_by = [], []
    for user_id, read_seq in cursors.order_by("user_id"):
        delivered_to.append(user_id)
        if read_seq >= message.seq:
            read_by.append(user_id)
    return MessageReceipts(
        message_id=message.pk, seq=message.seq, recipients=len(recipients), delivered_to=delivered_to, read_by=read_by
    )


def conversation_receipts(user, conversation_id) -> list[dict]:
    """Every current member's receipt cursors in one of the user's conversations
    (0 for a member who has none), ascending user id: the state the
    `receipts.updated` events move, which every member's devices receive anyway."""
    active_membership(user, conversation_id)
    members = Membership.objects.active().filter(conversation_id=conversation_id).values_list("user_id", flat=True)
    cursors = {
        c.user_id: c for c in ReceiptCursor.objects.filter(conversation_id=conversation_id, user_id__in=list(members))
    }
    return [
        {
            "user_id": user_id,
            "delivered_seq": cursors[user_id].delivered_seq if user_id in cursors else 0,
            "read_seq": cursors[user_id].read_seq if user_id in cursors else 0,
        }
        for user_id in sorted(members)
    ]


def users_by_id(user_ids) -> dict:
    """The users behind the ids a MessageReceipts lists, in one query."""
    return {user.pk: user for user in get_user_model().objects.filter(pk__in=set(user_ids))}


def annotate_read_state(conversations, user):
    """Add `read_seq` (how far the user has read, 0 when never) and `unread_count`
    (messages from others after it, deletes excluded) to a user's conversations.
    Registered with conversations.selectors in DeliveryConfig.ready."""
    read_seq = Coalesce(
        Subquery(ReceiptCursor.objects.filter(user=user, conversation=OuterRef("pk")).values("read_seq")[:1]),
        Value(0),
    )
    unread = (
        Message.objects.filter(conversation=OuterRef("pk"), seq__gt=OuterRef("read_seq"), deleted_at__isnull=True)
        .exclude(sender=user)
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return conversations.annotate(read_seq=read_seq).annotate(
        unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0))
    )
