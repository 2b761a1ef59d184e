"""Who may see and change a conversation.

A non-member gets the same NotFound as for a conversation that does not exist,
so membership cannot be probed.
"""

from core.errors import InvalidInput, NotFound, PermissionDenied

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


def require_manager(membership: Membership, action: str) -> None:
    if not membership.can_manage:
        raise PermissionDenied(f"Only the conversation's owner or admins may {action}.")


def require_group(conversation: Conversation, action: str) -> None:
    if conversation.kind != Conversation.Kind.GROUP:
        raise InvalidInput(f"A direct conversation cannot {action}.", field="conversation")
