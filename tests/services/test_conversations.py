"""Conversation and membership services: what they store and what they log."""

import pytest

from conversations.models import Change, Conversation, Membership
from conversations.services import add_member, create_conversation, remove_member, rename_conversation
from core.errors import InvalidInput, NotFound, PermissionDenied, RateLimited

pytestmark = pytest.mark.django_db


def kinds(conversation):
    return list(Change.objects.filter(conversation=conversation).order_by("seq").values_list("seq", "kind"))


def test_group_creation_makes_creator_owner_and_logs_seq_1(make_user):
    alice, bob = make_user(), make_user()
    conversation, created = create_conversation(creator=alice, kind="group", title=" Team ", member_ids=[bob.pk])
    assert created
    assert conversation.title == "Team"
    roles = dict(Membership.objects.filter(conversation=conversation).values_list("user_id", "role"))
    assert roles == {alice.pk: "owner", bob.pk: "member"}
    assert kinds(conversation) == [(1, "conversation.created")]
    payload = Change.objects.get(conversation=conversation).payload
    assert [m["user"]["id"] for m in payload["members"]] == [alice.pk, bob.pk]
    conversation.refresh_from_db()
    assert conversation.last_seq == 1


def test_direct_conversation_is_one_per_pair(make_user):
    alice, bob = make_user(), make_user()
    first, created = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    again, created_again = create_conversation(creator=bob, kind="direct", member_ids=[alice.pk])
    assert created and not created_again
    assert again.pk == first.pk
    assert Conversation.objects.filter(kind="direct").count() == 1


@pytest.mark.parametrize(
    "kind, member_ids, title, field",
    [
        ("chat", [], "", "kind"),
        ("direct", [], "", "member_ids"),
        ("direct", "others", "", "member_ids"),
        ("direct", [999999], "", "member_ids"),
        ("direct", "bob", "Hi", "title"),
        ("group", "bob", "x" * 201, "title"),
    ],
)
def test_creation_rejects_bad_input_naming_the_field(make_user, kind, member_ids, title, field):
    alice, bob = make_user(), make_user()
    if member_ids == "bob":
        member_ids = [bob.pk]
    with pytest.raises(InvalidInput) as error:
        create_conversation(creator=alice, kind=kind, title=title, member_ids=member_ids)
    assert error.value.field == field
    assert Conversation.objects.count() == 0


def test_rename_logs_and_requires_a_manager(make_user):
    alice, bob, eve = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", title="Old", member_ids=[bob.pk])
    with pytest.raises(PermissionDenied):
        rename_conversation(actor=bob, conversation_id=conversation.pk, title="Bob's")
    with pytest.raises(NotFound):
        rename_conversation(actor=eve, conversation_id=conversation.pk, title="Eve's")
    rename_conversation(actor=alice, conversation_id=conversation.pk, title="New")
    rename_conversation(actor=alice, conversation_id=conversation.pk, title="New")  # no-op, no change
    conversation.refresh_from_db()
    assert conversation.title == "New"
    assert kinds(conversation) == [(1, "conversation.created"), (2, "conversation.renamed")]
    assert Change.objects.get(conversation=conversation, seq=2).payload["previous_title"] == "Old"


def test_add_and_remove_member_record_seqs_on_the_membership(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    added = add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    assert (added.is_active, added.joined_seq) == (True, 2)
    assert add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk).pk == added.pk  # no-op
    removed = remove_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    assert (removed.is_active, removed.left_seq) == (False, 3)
    again = add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk, role="admin")
    assert (again.pk, again.is_active, again.joined_seq, again.left_seq, again.role) == (
        added.pk,
        True,
        4,
        None,
        "admin",
    )
    assert kinds(conversation)[1:] == [(2, "member.added"), (3, "member.removed"), (4, "member.added")]


def test_member_rules(make_user):
    owner, admin, member, outsider = make_user(), make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=owner, kind="group", member_ids=[member.pk])
    add_member(actor=owner, conversation_id=conversation.pk, user_id=admin.pk, role="admin")
    with pytest.raises(PermissionDenied):
        add_member(actor=member, conversation_id=conversation.pk, user_id=outsider.pk)
    with pytest.raises(PermissionDenied):
        remove_member(actor=admin, conversation_id=conversation.pk, user_id=owner.pk)
    with pytest.raises(InvalidInput) as error:
        add_member(actor=owner, conversation_id=conversation.pk, user_id=outsider.pk, role="owner")
    assert error.value.field == "role"
    with pytest.raises(InvalidInput) as error:
        add_member(actor=owner, conversation_id=conversation.pk, user_id=424242)
    assert error.value.field == "user_id"
    with pytest.raises(NotFound):
        remove_member(actor=owner, conversation_id=conversation.pk, user_id=outsider.pk)
    # A member may leave on their own.
    remove_member(actor=member, conversation_id=conversation.pk, user_id=member.pk)
    assert not Membership.objects.get(conversation=conversation, user=member).is_active


def test_owner_leaving_passes_ownership_to_an_admin(make_user):
    owner, member, admin = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=owner, kind="group", member_ids=[member.pk])
    add_member(actor=owner, conversation_id=conversation.pk, user_id=admin.pk, role="admin")
    remove_member(actor=owner, conversation_id=conversation.pk, user_id=owner.pk)
    assert Membership.objects.get(conversation=conversation, user=admin).role == "owner"
    removal = Change.objects.get(conversation=conversation, kind="member.removed")
    assert removal.payload["new_owner"] == admin.pk


def test_direct_conversations_have_fixed_members_and_no_title(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    with pytest.raises(InvalidInput):
        add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    with pytest.raises(InvalidInput):
        rename_conversation(actor=alice, conversation_id=conversation.pk, title="Us")
    assert kinds(conversation) == [(1, "conversation.created")]


def test_true_is_not_a_user_id(make_user):
    """JSON true is not 1: a bool never names user 1, whatever Python's bool says."""
    alice = make_user()
    if alice.pk != 1:
        make_user(id=1)  # the user `True` would have named
    conversation, _ = create_conversation(creator=alice, kind="group")
    with pytest.raises(InvalidInput) as error:
        add_member(actor=alice, conversation_id=conversation.pk, user_id=True)
    assert error.value.field == "user_id"
    with pytest.raises(InvalidInput) as error:
        create_conversation(creator=alice, kind="group", member_ids=[True])
    assert error.value.field == "member_ids"
    assert Membership.objects.filter(conversation=conversation).count() == 1
    assert kinds(conversation) == [(1, "conversation.created")]


def test_others_may_add_a_user_to_a_bounded_number_of_conversations_an_hour(make_user, settings):
    settings.MEMBER_ADDS_PER_HOUR = 2
    alice, mallory, victim = make_user(), make_user(), make_user()
    create_conversation(creator=victim, kind="group")  # their own: not counted
    create_conversation(creator=mallory, kind="group", member_ids=[victim.pk])
    third, _ = create_conversation(creator=alice, kind="group")
    add_member(actor=alice, conversation_id=third.pk, user_id=victim.pk)
    fourth, _ = create_conversation(creator=mallory, kind="group")
    with pytest.raises(RateLimited) as error:
        add_member(actor=mallory, conversation_id=fourth.pk, user_id=victim.pk)
    assert (error.value.field, error.value.http_status) == ("user_id", 429)
    with pytest.raises(RateLimited) as error:
        create_conversation(creator=alice, kind="group", member_ids=[victim.pk])
    assert error.value.field == "member_ids"
    assert Membership.objects.filter(user=victim).count() == 3
    # An admin (as moderator) is not limited; the user may still start their own.
    add_member(actor=alice, conversation_id=fourth.pk, user_id=victim.pk, as_moderator=True)
    create_conversation(creator=victim, kind="direct", member_ids=[alice.pk])
