"""The log as the gateway reads it: rows whose payload stays the JSON the
database keeps, made into the same frames as the live events of the same
changes (on whichever database the tests run on)."""

import json

import pytest

from conversations.changelog import change_event
from conversations.models import Change
from conversations.selectors import changes_between, changes_in_ranges
from conversations.services.conversations import create_conversation
from conversations.services.members import add_member, remove_member
from conversations.services.messages import delete_message, edit_message, send_message
from gateway.log_reads import logged

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_logs(make_user):
    """Two conversations whose logs hold every kind of change (a body with
    quotes, a newline and non-ASCII text among them)."""
    ann, bob, cy = make_user(), make_user(), make_user()
    first, _ = create_conversation(creator=ann, kind="group", title='the "team"', member_ids=[bob.pk])
    sent = send_message(sender=ann, conversation_id=first.pk, client_msg_id="m1", body='say "hi"\nthen ☃ 😀')
    edit_message(actor=ann, conversation_id=first.pk, message_id=sent.message.pk, body="edited", expected_version=1)
    add_member(actor=ann, conversation_id=first.pk, user_id=cy.pk)
    remove_member(actor=ann, conversation_id=first.pk, user_id=bob.pk)
    delete_message(actor=ann, conversation_id=first.pk, message_id=sent.message.pk)
    second, _ = create_conversation(creator=bob, kind="group", title="other", member_ids=[cy.pk])
    send_message(sender=cy, conversation_id=second.pk, client_msg_id="m2", body="hello")
    return first.pk, second.pk


def live(conversation_id: int) -> list:
    """What the publishing side sends for each change of the log: (kind, frame, meta)."""
    return [
        (c.kind, change_event(c).frame(), change_event(c).meta)
        for c in Change.objects.filter(conversation_id=conversation_id).order_by("seq")
    ]


def as_read(rows) -> list:
    return [(change.kind, json.loads(change.text), change.meta) for change in map(logged, rows)]


def test_a_read_range_gives_the_frames_and_meta_of_the_live_events(two_logs):
    first, second = two_logs
    found = changes_in_ranges({first: (0, 100), second: (0, 100)})
    assert as_read(found[first]) == live(first)
    assert as_read(found[second]) == live(second)
    kinds = {kind for kind, _, _ in live(first)}
    assert {"conversation.created", "message.created", "message.edited", "member.added", "member.removed"} <= kinds
    # A member change's meta names its user; the stream stops at the device's own removal by it.
    assert all(meta.get("user_id") for kind, _, meta in as_read(found[first]) if kind.startswith("member."))


def test_ranges_and_limits_cut_where_they_say(two_logs):
    first, second = two_logs
    found = changes_in_ranges({first: (2, 4), second: (1, 100)})
    assert [row.seq for row in found[first]] == [3, 4]
    assert [row.seq for row in found[second]] == [2]
    assert changes_in_ranges({}) == {}
    assert [row.seq for row in changes_between(first, 1, limit=2)] == [2, 3]
    assert [row.seq for row in changes_between(first, 1, until=3, limit=10)] == [2, 3]
    assert as_read(changes_between(first, 0, limit=100)) == live(first)
