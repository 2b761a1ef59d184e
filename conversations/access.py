"""Who may see and change a conversation.

A non-member gets the same NotFound as for a conversation that does not exist,
so membership cannot be probed.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.errors import InvalidInput, NotFound, PermissionDenied, RateLimited

from .models import Conversation, Membership
from .validation import is_id


def active_membership(user, conversation_id) -> Membership:
    if not is_id(conversation_id):
        raise NotFound("Conversation not found.")
    membership = (
        Membership.objects.active()
        .select_related("conversation")
        .filter(user=user, conversation_id=conversation_id)
        .first()
    )
    if membership is None:
        raise NotFound("Conversation not found.")
    return membership


def require_active_member(user, conversation_id) -> None:
    """NotFound unless the user is an active member: the send path's check, an
    EXISTS query with no rows to build (a send runs it under the conversation's
    lock, so it must be cheap)."""
    if not (is_id(conversation_id) and _is_active_member(user.pk, conversation_id)):
        raise NotFound("Conversation not found.")


def _is_active_member(user_id: int, conversation_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Membership._meta.db_table} WHERE conversation_id = %s AND user_id = %s AND is_active",
            [conversation_id, user_id],
        )
        return cursor.fetchone() is not None


def require_manager(membership: Membership, action: str) -> None:
    if not membership.can_manage:
        raise PermissionDenied(f"Only the conversation's owner or admins may {action}.")


def require_group(conversation: Conversation, action: str) -> None:
    if conversation.kind != Conversation.Kind.GROUP:
        raise InvalidInput(f"A direct conversation cannot {action}.", field="conversation")


def require_addable(users, *, by, field: str) -> None:
    """Others may add a user to at most MEMBER_ADDS_PER_HOUR conversations an
    hour: without a bound, anyone could put anyone into a thousand groups,
    slowing the victim's catch-up and learning their presence through each.

    Counted from the memberships the user gained in the last hour in
    conversations they did not create (a re-add counts again)."""
    since = timezone.now() - timedelta(hours=1)
    limit = settings.MEMBER_ADDS_PER_HOUR
    for user in users:
        if user.pk == by.pk:
            continue
        recent = (
            Membership.objects.filter(user=user, joined_at__gte=since)
            .exclude(conversation__created_by_id=user.pk)
            .count()
        )
        if recent >= limit:
            raise RateLimited(
                f"User {user.pk} was added to {limit} conversations in the last hour; try again later.",
                field=field,
            )
