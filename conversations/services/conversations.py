"""Creating and renaming conversations."""

from django.contrib.auth import get_user_model
from django.db import IntegrityError

from core.errors import InvalidInput

from ..access import active_membership, require_addable, require_group, require_manager
from ..changelog import append_change, lock_conversation, logged_by_caller
from ..models import Change, Conversation, Membership
from ..payloads import conversation_payload
from ..validation import clean_title, is_id


def _users_by_id(user_ids) -> dict:
    if not isinstance(user_ids, (list, tuple, set)) or not all(is_id(i) for i in user_ids):
        raise InvalidInput("member_ids must be a list of user ids.", field="member_ids")
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=set(user_ids), is_active=True)}
    missing = sorted(set(user_ids) - set(users))
    if missing:
        raise InvalidInput("member_ids must all be ids of existing users.", field="member_ids")
    return users


def create_conversation(*, creator, kind: str, title: str = "", member_ids=()) -> tuple[Conversation, bool]:
    """Create a conversation with its creator and members; returns (conversation, created).

    A direct conversation is one per pair of users: asking for it again returns
    the existing one with created=False.
    """
    if kind not in Conversation.Kind.values:
        raise InvalidInput(f"kind must be one of {Conversation.Kind.values}.", field="kind")
    title = clean_title(title)
    others = _users_by_id(list(member_ids))
    others.pop(creator.pk, None)

    if kind == Conversation.Kind.DIRECT:
        if len(others) != 1:
            raise InvalidInput("A direct conversation has exactly one other member.", field="member_ids")
        if title:
            raise InvalidInput("A direct conversation has no title.", field="title")
        (other,) = others.values()
        key = Conversation.direct_key_for(creator.pk, other.pk)
        existing = Conversation.objects.filter(direct_key=key).first()
        if existing:
            return existing, False
        try:
            return _create(creator, kind, "", others.values(), direct_key=key), True
        except IntegrityError:
            # Both users opened the conversation at once; the other request won.
            return Conversation.objects.get(direct_key=key), False

    return _create(creator, kind, title, others.values(), direct_key=None), True


@logged_by_caller()
def _create(creator, kind, title, others, *, direct_key) -> Conversation:
    require_addable(others, by=creator, field="member_ids")
    conversation = Conversation.objects.create(kind=kind, title=title, created_by=creator, direct_key=direct_key)
    creator_role = Membership.Role.OWNER if kind == Conversation.Kind.GROUP else Membership.Role.MEMBER
    memberships = [Membership(conversation=conversation, user=creator, role=creator_role, joined_seq=1)]
    memberships += [
        Membership(conversation=conversation, user=user, role=Membership.Role.MEMBER, joined_seq=1)
        for user in sorted(others, key=lambda u: u.pk)
    ]
    # Membership rows carry no events of their own: the conversation.created change lists them.
    Membership.objects.bulk_create(memberships)
    for membership in memberships:
        membership.conversation = conversation
    append_change(
        conversation,
        Change.Kind.CONVERSATION_CREATED,
        conversation_payload(conversation, memberships),
        actor=creator,
    )
    return conversation


@logged_by_caller()
def rename_conversation(*, actor, conversation_id: int, title, as_moderator: bool = False) -> Conversation:
    title = clean_title(title)
    conversation = lock_conversation(conversation_id)
    membership = None if as_moderator else active_membership(actor, conversation_id)
    require_group(conversation, "be renamed")
    if membership is not None:
        require_manager(membership, "rename it")
    if conversation.title == title:
        return conversation
    old_title = conversation.title
    conversation.title = title
    conversation.save(update_fields=["title"])
    append_change(
        conversation,
        Change.Kind.CONVERSATION_RENAMED,
        {"title": title, "previous_title": old_title, "renamed_by": actor.pk},
        actor=actor,
    )
    return conversation
