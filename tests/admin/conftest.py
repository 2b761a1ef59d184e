"""Fixtures for the admin tests: a small populated world and a recorder of the
events the services publish."""

import pytest
from django.utils import timezone

import conversations.changelog as changelog
from conversations.models import Conversation
from conversations.services import create_conversation, edit_message, send_message
from delivery.services import mark_read
from presence.models import DevicePresence, Status, UserPresence


@pytest.fixture
def world(make_user, make_device):
    """alice owns the group "Planning" with bob; alice and bob also share a
    direct conversation; carol is in neither. One group message was edited once."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice_laptop, _ = make_device(alice, "alice-laptop")
    bob_phone, _ = make_device(bob, "bob-phone")
    group, _ = create_conversation(creator=alice, kind=Conversation.Kind.GROUP, title="Planning", member_ids=[bob.pk])
    direct, _ = create_conversation(creator=alice, kind=Conversation.Kind.DIRECT, member_ids=[bob.pk])
    hello = send_message(
        sender=alice, conversation_id=group.pk, client_msg_id="m1", body="hello team", device=alice_laptop
    ).message
    agenda = send_message(sender=bob, conversation_id=group.pk, client_msg_id="m2", body="agenda v1").message
    agenda = edit_message(
        actor=bob, conversation_id=group.pk, message_id=agenda.pk, body="agenda v2", expected_version=1
    )
    secret = send_message(sender=bob, conversation_id=direct.pk, client_msg_id="m3", body="just us").message
    mark_read(user=bob, conversation_id=group.pk, seq=hello.seq)
    now = timezone.now()
    DevicePresence.objects.create(device=alice_laptop, status=Status.ONLINE, last_heartbeat_at=now)
    UserPresence.objects.create(user=alice, status=Status.ONLINE, last_seen_at=now)
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "alice_laptop": alice_laptop,
        "bob_phone": bob_phone,
        "group": group,
        "direct": direct,
        "hello": hello,
        "agenda": agenda,
        "secret": secret,
    }


@pytest.fixture
def published(monkeypatch):
    """The events the change log publishes, as (kind, conversation_id, seq, user_ids)."""
    events = []
    original = changelog.publish_on_commit

    def record(event, groups):
        user_ids = sorted(int(group.removeprefix("user.")) for group in groups if group.startswith("user."))
        events.append((event.kind, event.conversation_id, event.seq, user_ids))
        return original(event, groups)

    monkeypatch.setattr(changelog, "publish_on_commit", record)
    return events
