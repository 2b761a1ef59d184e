"""The one routing rule: which channel-layer groups a logged change goes to."""

import pytest

from conversations.changelog import groups_of
from conversations.services import add_member, create_conversation, remove_member, rename_conversation

pytestmark = pytest.mark.django_db


def test_changes_that_bring_or_take_a_conversation_also_go_to_the_users_own_devices(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[carol.pk])
    add_member(actor=alice, conversation_id=conversation.pk, user_id=bob.pk)
    rename_conversation(actor=alice, conversation_id=conversation.pk, title="plans")
    remove_member(actor=alice, conversation_id=conversation.pk, user_id=bob.pk)
    created, added, renamed, removed = conversation.changes.order_by("seq")
    group = f"conversation.{conversation.pk}"
    assert groups_of(created) == [group, *sorted(f"user.{u.pk}" for u in (alice, carol))]
    assert groups_of(added) == [group, f"user.{bob.pk}"]
    assert groups_of(renamed) == [group]
    assert groups_of(removed) == [group, f"user.{bob.pk}"]
