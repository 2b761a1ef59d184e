"""plan_sync: where each conversation resumes for a device with given cursors."""

import itertools

import pytest

from conversations.services import add_member, create_conversation, remove_member, send_message
from delivery.sync import Resume, SyncPlan, plan_sync

pytestmark = pytest.mark.django_db

_msg_ids = itertools.count(1)


def say(user, conversation_id, times=1):
    for _ in range(times):
        send_message(sender=user, conversation_id=conversation_id, client_msg_id=f"m{next(_msg_ids)}", body="hi")


@pytest.fixture
def team(make_user):
    """alice (owner) and bob from seq 1; carol added at seq 4; last seq 5."""
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", title="Team", member_ids=[bob.pk])  # seq 1
    say(alice, conversation.pk, 2)  # seqs 2, 3
    add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)  # seq 4
    say(bob, conversation.pk)  # seq 5
    conversation.refresh_from_db()
    assert conversation.last_seq == 5
    return conversation.pk, alice, bob, carol


def test_resumes_at_the_given_cursor(team):
    cid, alice, _, _ = team
    assert plan_sync(alice.pk, {cid: 3}, 500) == SyncPlan(resumes=[Resume(cid, 3, 5)], gone=[])
    assert plan_sync(alice.pk, {cid: 5}, 500) == SyncPlan(resumes=[Resume(cid, 5, 5)], gone=[])
    assert plan_sync(alice.pk, {cid: 0}, 500) == SyncPlan(resumes=[Resume(cid, 0, 5)], gone=[])


def test_a_conversation_the_device_does_not_name_resumes_from_just_before_joining(team):
    cid, alice, _, carol = team
    assert plan_sync(carol.pk, {}, 500) == SyncPlan(resumes=[Resume(cid, 3, 5)], gone=[])
    assert plan_sync(alice.pk, {}, 500) == SyncPlan(resumes=[Resume(cid, 0, 5)], gone=[])


def test_a_cursor_past_the_last_seq_is_reset_as_cursor_ahead(team):
    cid, alice, _, _ = team
    assert plan_sync(alice.pk, {cid: 6}, 500) == SyncPlan(resumes=[Resume(cid, 5, 5, reset="cursor_ahead")], gone=[])


def test_more_changes_than_the_limit_are_reset_as_too_many_changes(team):
    cid, alice, _, carol = team
    assert plan_sync(alice.pk, {cid: 1}, 3) == SyncPlan(resumes=[Resume(cid, 5, 5, reset="too_many_changes")], gone=[])
    assert plan_sync(alice.pk, {cid: 1}, 4) == SyncPlan(resumes=[Resume(cid, 1, 5)], gone=[])  # exactly the limit
    # Without a cursor, counted from just before joining (seq 3 for carol).
    assert plan_sync(carol.pk, {}, 1) == SyncPlan(resumes=[Resume(cid, 5, 5, reset="too_many_changes")], gone=[])
    assert plan_sync(carol.pk, {}, 2) == SyncPlan(resumes=[Resume(cid, 3, 5)], gone=[])


def test_a_cursor_before_the_latest_joining_is_reset_as_rejoined(team):
    cid, alice, _, carol = team
    remove_member(actor=alice, conversation_id=cid, user_id=carol.pk)  # seq 6
    add_member(actor=alice, conversation_id=cid, user_id=carol.pk)  # seq 7: joined again

    assert plan_sync(carol.pk, {cid: 5}, 500) == SyncPlan(resumes=[Resume(cid, 7, 7, reset="rejoined")], gone=[])
    assert plan_sync(carol.pk, {cid: 6}, 500) == SyncPlan(resumes=[Resume(cid, 6, 7)], gone=[])
    assert plan_sync(carol.pk, {}, 500) == SyncPlan(resumes=[Resume(cid, 6, 7)], gone=[])


def test_a_conversation_left_since_the_cursor_resumes_until_the_removal(team):
    cid, alice, bob, _ = team
    remove_member(actor=alice, conversation_id=cid, user_id=bob.pk)  # seq 6
    say(alice, cid)  # seq 7, after bob left

    assert plan_sync(bob.pk, {cid: 4}, 500) == SyncPlan(resumes=[Resume(cid, 4, 6, until=6)], gone=[])
    assert plan_sync(bob.pk, {cid: 5}, 1) == SyncPlan(resumes=[Resume(cid, 5, 6, until=6)], gone=[])
    # At the removal already, or too far behind it: nothing to send.
    assert plan_sync(bob.pk, {cid: 6}, 500) == SyncPlan(resumes=[], gone=[cid])
    assert plan_sync(bob.pk, {cid: 4}, 1) == SyncPlan(resumes=[], gone=[cid])
    # Not named: the device never had it.
    assert plan_sync(bob.pk, {}, 500) == SyncPlan(resumes=[], gone=[])


def test_unknown_and_never_joined_conversations_are_gone(team, make_user):
    cid, alice, bob, _ = team
    dave = make_user()
    other, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    missing = other.pk + 1000

    assert plan_sync(dave.pk, {missing: 0, cid: 2, other.pk: 0}, 500) == SyncPlan(
        resumes=[], gone=sorted([missing, cid, other.pk])
    )
    plan = plan_sync(alice.pk, {missing: 3, cid: 2}, 500)
    assert sorted(plan.resumes, key=lambda r: r.conversation_id) == [Resume(cid, 2, 5), Resume(other.pk, 0, 1)]
    assert plan.gone == [missing]
