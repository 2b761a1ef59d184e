"""Reads on conversations, messages and the change log, always scoped to a member."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Subquery, Value
from django.db.models.functions import Coalesce

from delivery.models import ReceiptCursor
from realtime_sync.errors import NotFound

from .access import active_membership
from .models import Change, Conversation, Membership, Message


def conversations_of(user):
    """The user's conversations, newest activity first, with `unread_count`,
    `read_seq` and `last_message_id` annotated."""
    read_seq = Coalesce(
        Subquery(
            ReceiptCursor.objects.filter(user=user, conversation=OuterRef("pk")).values("read_seq")[:1]
        ),
        Value(0),
    )
    unread = (
        Message.objects.filter(
            conversation=OuterRef("pk"), seq__gt=OuterRef("read_seq"), deleted_at__isnull=True
        )
        .exclude(sender=user)
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    last_message = Message.objects.filter(conversation=OuterRef("pk")).order_by("-seq").values("pk")[:1]
    last_change_at = Change.objects.filter(conversation=OuterRef("pk")).order_by("-seq").values("created_at")[:1]
    return (
        Conversation.objects.filter(memberships__user=user, memberships__is_active=True)
        .annotate(read_seq=read_seq)
        .annotate(
            unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
            last_message_id=Subquery(last_message),
            last_activity_at=Subquery(last_change_at),
        )
        .order_by(F("last_activity_at").desc(nulls_last=True), "-pk")
    )


def conversation_for(user, conversation_id) -> Conversation:
    """One of the user's conversations with the same annotations, or NotFound."""
    active_membership(user, conversation_id)
    return conversations_of(user).get(pk=conversation_id)


def members_of(conversation_id):
    return Membership.objects.active().filter(conversation_id=conversation_id).select_related("user")


def with_active_members(conversations):
    """The conversations with their active memberships (and users) prefetched into
    `active_members`, so listing a page of them costs two queries, not one per row."""
    members = Membership.objects.active().select_related("user")
    return conversations.prefetch_related(Prefetch("memberships", queryset=members, to_attr="active_members"))


def messages_by_id(ids) -> dict:
    return {m.pk: m for m in Message.objects.filter(pk__in=[i for i in ids if i is not None])}


@dataclass(frozen=True)
class Page:
    items: list
    has_more: bool


def _limit(limit) -> int:
    if limit is None:
        return settings.PAGE_SIZE_DEFAULT
    return max(1, min(int(limit), settings.PAGE_SIZE_MAX))


def messages_page(user, conversation_id, *, after=None, before=None, limit=None) -> Page:
    """Messages by seq: after a seq (ascending), before a seq, or the latest page.

    Items are always in ascending seq order. Tombstones are included, so a
    client paging through history learns of deletes too.
    """
    active_membership(user, conversation_id)
    limit = _limit(limit)
    messages = Message.objects.filter(conversation_id=conversation_id)
    if after is not None:
        rows = list(messages.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return Page(items=rows[:limit], has_more=len(rows) > limit)
    if before is not None:
        messages = messages.filter(seq__lt=before)
    rows = list(messages.order_by("-seq")[: limit + 1])
    return Page(items=list(reversed(rows[:limit])), has_more=len(rows) > limit)


def changes_after(user, conversation_id, *, after: int, limit=None) -> Page:
    """The conversation's change log after a seq, ascending."""
    active_membership(user, conversation_id)
    limit = _limit(limit)
    rows = list(
        Change.objects.filter(conversation_id=conversation_id, seq__gt=after).order_by("seq")[: limit + 1]
    )
    return Page(items=rows[:limit], has_more=len(rows) > limit)


def message_for(user, conversation_id, message_id) -> Message:
    active_membership(user, conversation_id)
    message = Message.objects.filter(pk=message_id, conversation_id=conversation_id).first()
    if message is None:
        raise NotFound("Message not found.")
    return message

