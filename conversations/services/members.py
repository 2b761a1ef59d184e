"""Adding and removing members of a group conversation."""

from django.contrib.auth import get_user_model
from django.utils import timezone

from core.errors import InvalidInput, NotFound, PermissionDenied

from ..access import active_membership, require_addable, require_group, require_manager
from ..changelog import lock_conversation, logged_by_caller, record_change, take_next_seq
from ..models import Change, Membership
from ..payloads import conversation_payload, member_payload, user_payload
from ..selectors import members_of
from ..validation import is_id

ADDABLE_ROLES = (Membership.Role.ADMIN, Membership.Role.MEMBER)


@logged_by_caller()
def add_member(
    *, actor, conversation_id: int, user_id, role: str = Membership.Role.MEMBER, as_moderator: bool = False
) -> Membership:
    """Add a user to a group conversation; adding a current member changes nothing."""
    if role not in ADDABLE_ROLES:
        raise InvalidInput(f"role must be one of {list(ADDABLE_ROLES)}.", field="role")
    conversation = lock_conversation(conversation_id)
    actor_membership = None if as_moderator else active_membership(actor, conversation_id)
    require_group(conversation, "have members added")
    if actor_membership is not None:
        require_manager(actor_membership, "add members")
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if is_id(user_id) else None
    if user is None:
        raise InvalidInput("No such user.", field="user_id")
    if not as_moderator:
        require_addable([user], by=actor, field="user_id")

    membership = Membership.objects.filter(conversation=conversation, user=user).first()
    if membership is not None and membership.is_active:
        return membership
    seq = take_next_seq(conversation)
    if membership is None:
        membership = Membership(conversation=conversation, user=user)
    membership.role = role
    membership.is_active = True
    membership.joined_at = timezone.now()
    membership.joined_seq = seq
    membership.left_at = None
    membership.left_seq = None
    membership.save()
    record_change(
        conversation,
        seq,
        Change.Kind.MEMBER_ADDED,
        {
            **member_payload(membership),
            "added_by": actor.pk,
            # The new member's devices know nothing of the conversation yet.
            "conversation": conversation_payload(conversation, members_of(conversation.pk)),
        },
        actor=actor,
    )
    return membership


@logged_by_caller()
def remove_member(*, actor, conversation_id: int, user_id, as_moderator: bool = False) -> Membership:
    """Remove a member, or leave when the actor removes themselves.

    Owners and admins may remove members; nobody may remove the owner. When the
    owner leaves, the longest-standing admin (or else member) becomes owner.
    """
    conversation = lock_conversation(conversation_id)
    actor_membership = None if as_moderator else active_membership(actor, conversation_id)
    require_group(conversation, "have members removed")
    membership = (
        Membership.objects.active().select_related("user").filter(conversation=conversation, user_id=user_id).first()
    )
    if membership is None:
        raise NotFound("Member not found.")
    leaving = actor_membership is not None and membership.pk == actor_membership.pk
    if actor_membership is not None and not leaving:
        require_manager(actor_membership, "remove members")
        if membership.role == Membership.Role.OWNER:
            raise PermissionDenied("The owner cannot be removed.")

    seq = take_next_seq(conversation)
    membership.is_active = False
    membership.left_at = timezone.now()
    membership.left_seq = seq
    membership.save(update_fields=["is_active", "left_at", "left_seq"])
    new_owner = pass_ownership(conversation) if membership.role == Membership.Role.OWNER else None
    record_change(
        conversation,
        seq,
        Change.Kind.MEMBER_REMOVED,
        {
            "user": user_payload(membership.user),
            "removed_by": actor.pk,
            "new_owner": new_owner.user_id if new_owner else None,
        },
        actor=actor,
    )
    return membership


def pass_ownership(conversation) -> Membership | None:
    """Make the longest-standing admin (or else member) the owner, after the owner
    left; the new owner, or None when nobody is left. Logs nothing itself: the
    member.removed change names the new owner."""
    remaining = Membership.objects.active().filter(conversation=conversation)
    successor = (
        remaining.filter(role=Membership.Role.ADMIN).order_by("joined_at", "id").first()
        or remaining.order_by("joined_at", "id").first()
    )
    if successor is not None:
        successor.role = Membership.Role.OWNER
        successor.save(update_fields=["role"])
    return successor
