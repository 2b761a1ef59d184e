"""Reads on conversations, messages and the change log, always scoped to a member."""

from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, OuterRef, Prefetch, Subquery
from django.db.models.functions import Lower

from core.errors import NotFound
from core.lookups import AnyOf

from .access import active_membership
from .models import Change, Conversation, Membership, Message

# Functions (queryset, user) -> queryset that other apps register (in their
# AppConfig.ready) to annotate a user's conversations with state they own: the
# delivery app adds `read_seq` and `unread_count`. This app imports none of them.
_user_annotations: list = []


def add_user_annotations(annotate) -> None:
    if annotate not in _user_annotations:
        _user_annotations.append(annotate)


def conversations_of(user):
    """The user's conversations, newest activity first, with `last_message_id`,
    `last_activity_at` and the registered per-user state annotated."""
    last_message = Message.objects.filter(conversation=OuterRef("pk")).order_by("-seq").values("pk")[:1]
    last_change_at = Change.objects.filter(conversation=OuterRef("pk")).order_by("-seq").values("created_at")[:1]
    conversations = Conversation.objects.filter(memberships__user=user, memberships__is_active=True).annotate(
        last_message_id=Subquery(last_message),
        last_activity_at=Subquery(last_change_at),
    )
    for annotate in _user_annotations:
        conversations = annotate(conversations, user)
    return conversations.order_by(F("last_activity_at").desc(nulls_last=True), "-pk")


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


def users_findable_by(user, *, search: str = "", limit=None) -> Page:
    """Active users other than `user` whose username contains `search` (any case),
    by username (any case): everyone (USER_SEARCH_SCOPE "all") or only those who share a
    conversation with `user` ("shared")."""
    limit = max(1, min(int(limit or settings.USER_SEARCH_PAGE_SIZE), settings.USER_SEARCH_PAGE_SIZE))
    users = get_user_model().objects.filter(is_active=True).exclude(pk=user.pk)
    if settings.USER_SEARCH_SCOPE == "shared":
        theirs = Membership.objects.active().filter(user=user).values("conversation_id")
        shared = Membership.objects.active().filter(conversation_id__in=theirs).values("user_id")
        users = users.filter(pk__in=shared)
    if search:
        users = users.filter(username__icontains=search)
    rows = list(users.order_by(Lower("username"), "username", "pk")[: limit + 1])
    return Page(items=rows[:limit], has_more=len(rows) > limit)


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
    rows = list(Change.objects.filter(conversation_id=conversation_id, seq__gt=after).order_by("seq")[: limit + 1])
    return Page(items=rows[:limit], has_more=len(rows) > limit)


def message_for(user, conversation_id, message_id) -> Message:
    active_membership(user, conversation_id)
    message = Message.objects.filter(pk=message_id, conversation_id=conversation_id).first()
    if message is None:
        raise NotFound("Message not found.")
    return message


# The change log without a membership check: callers decide what a device may
# read (see delivery.sync.plan_sync).


def last_seqs(conversation_ids) -> dict[int, int]:
    return dict(Conversation.objects.filter(AnyOf(F("pk"), list(conversation_ids))).values_list("pk", "last_seq"))


class LogRow(NamedTuple):
    """A change of the log as the gateway sends it: the payload is the JSON text
    the database keeps, not decoded. A catch-up sends thousands of changes, and
    a model instance for each, its payload decoded and encoded again, cost
    seven times reading the rows (27 against 4 µs a change)."""

    conversation_id: int
    seq: int
    kind: str
    payload_json: str


# The payload as text on both backends: PostgreSQL's jsonb prints itself, SQLite keeps text.
_LOG_ROW_COLUMNS = "conversation_id, seq, kind, CAST(payload AS TEXT)"


def changes_between(conversation_id: int, after: int, *, until: int | None = None, limit: int) -> list[LogRow]:
    """Up to `limit` changes of a conversation after a seq (and up to `until`), ascending."""
    wanted, params = "conversation_id = %s AND seq > %s", [conversation_id, after]
    if until is not None:
        wanted, params = f"{wanted} AND seq <= %s", [*params, until]
    return _log_rows(f"{wanted} ORDER BY seq LIMIT %s", [*params, limit])


def changes_in_ranges(ranges: dict[int, tuple[int, int]]) -> dict[int, list[LogRow]]:
    """For each conversation id -> (after, up_to): its changes with after < seq <=
    up_to, ascending; in one query for all of them."""
    if not ranges:
        return {}
    # Built by hand: an OR of N ranges built with the ORM cost twice the query itself.
    wanted = " OR ".join(["(conversation_id = %s AND seq > %s AND seq <= %s)"] * len(ranges))
    params = [value for conversation_id, (after, up_to) in ranges.items() for value in (conversation_id, after, up_to)]
    found: dict[int, list[LogRow]] = {}
    for row in _log_rows(f"{wanted} ORDER BY conversation_id, seq", params):
        found.setdefault(row.conversation_id, []).append(row)
    return found


def _log_rows(where: str, params: list) -> list[LogRow]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_LOG_ROW_COLUMNS} FROM {Change._meta.db_table} WHERE {where}", params)
        return [LogRow(*row) for row in cursor.fetchall()]
