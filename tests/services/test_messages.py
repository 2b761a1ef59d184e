"""Message services: idempotent sends, versioned edits, tombstone deletes."""

import json

import pytest
from django.conf import settings

from conversations.models import Change, Message, MessageEdit
from conversations.payloads import message_payload
from conversations.services import create_conversation, delete_message, edit_message, send_message
from core.errors import (
    ClientMsgIdConflict,
    InvalidInput,
    MessageDeleted,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from core.events import dumps

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user):
    alice, bob, outsider = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    return conversation, alice, bob, outsider


def send(conversation, sender, client_msg_id="c1", body="hello", **extra):
    return send_message(sender=sender, conversation_id=conversation.pk, client_msg_id=client_msg_id, body=body, **extra)


def test_send_takes_the_next_seq_and_logs_the_message(chat, make_device):
    conversation, alice, _, _ = chat
    device, _ = make_device(alice)
    result = send(conversation, alice, device=device)
    assert result.created
    message = result.message
    assert (message.seq, message.version, message.sender_device_id) == (2, 1, device.pk)
    change = Change.objects.get(conversation=conversation, seq=2)
    assert change.kind == "message.created"
    assert change.message_id == message.pk
    assert change.payload["client_msg_id"] == "c1"
    assert change.payload["body"] == "hello"


def test_the_send_returns_the_stored_message_and_logs_its_payload(chat, make_device):
    """On PostgreSQL the send is one SQL function, elsewhere ORM calls: either
    way the message returned is the row stored, and the log holds its payload."""
    conversation, alice, bob, _ = chat
    device, _ = make_device(alice)
    first = send(conversation, bob, client_msg_id="first")
    result = send(
        conversation, alice, client_msg_id="reply", body="héllo ✓", device=device, reply_to_id=first.message.pk
    )
    stored = Message.objects.get(pk=result.message.pk)
    assert message_payload(result.message) == message_payload(stored)
    change = Change.objects.get(conversation=conversation, seq=stored.seq)
    assert (change.kind, change.actor_id, change.message_id) == ("message.created", alice.pk, stored.pk)
    assert change.payload == json.loads(dumps(message_payload(stored)))
    assert change.payload["reply_to"] == first.message.pk


def test_a_retry_returns_the_original_message(chat):
    conversation, alice, _, _ = chat
    first = send(conversation, alice, body="hello")
    retry = send(conversation, alice, body="hello again")
    assert not retry.created
    assert retry.message.pk == first.message.pk
    assert retry.message.body == "hello"
    assert Message.objects.count() == 1
    assert Change.objects.filter(kind="message.created").count() == 1


def test_client_msg_id_is_per_sender(chat):
    conversation, alice, bob, _ = chat
    a = send(conversation, alice, client_msg_id="same")
    b = send(conversation, bob, client_msg_id="same")
    assert a.created and b.created and a.message.pk != b.message.pk


def test_reusing_a_client_msg_id_in_another_conversation_is_refused(chat, make_user):
    conversation, alice, bob, _ = chat
    other, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    send(conversation, alice, client_msg_id="once")
    with pytest.raises(ClientMsgIdConflict):
        send(other, alice, client_msg_id="once")
    assert Message.objects.filter(conversation=other).count() == 0


def test_non_members_cannot_send_and_cannot_tell_the_conversation_exists(chat):
    conversation, _, _, outsider = chat
    with pytest.raises(NotFound) as member_error:
        send(conversation, outsider)
    with pytest.raises(NotFound) as missing_error:
        send_message(sender=outsider, conversation_id=10**9, client_msg_id="x", body="x")
    assert member_error.value.as_dict() == missing_error.value.as_dict()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"body": ""}, "body"),
        ({"body": "   "}, "body"),
        ({"body": "x" * (settings.MESSAGE_BODY_MAX_CHARS + 1)}, "body"),
        ({"body": 5}, "body"),
        ({"client_msg_id": ""}, "client_msg_id"),
        ({"client_msg_id": "x" * (settings.CLIENT_MSG_ID_MAX_CHARS + 1)}, "client_msg_id"),
        ({"reply_to_id": "1"}, "reply_to"),
        ({"reply_to_id": 10**9}, "reply_to"),
    ],
)
def test_bad_sends_name_the_field_and_store_nothing(chat, changes, field):
    conversation, alice, _, _ = chat
    arguments = {"client_msg_id": "c1", "body": "hello", **changes}
    with pytest.raises(InvalidInput) as error:
        send_message(sender=alice, conversation_id=conversation.pk, **arguments)
    assert error.value.field == field
    assert Message.objects.count() == 0
    conversation.refresh_from_db()
    assert conversation.last_seq == 1


def test_body_at_the_limit_is_accepted(chat):
    conversation, alice, _, _ = chat
    body = "é" * settings.MESSAGE_BODY_MAX_CHARS
    assert send(conversation, alice, body=body).message.body == body


def test_reply_to_a_message_of_the_same_conversation(chat):
    conversation, alice, bob, _ = chat
    original = send(conversation, alice).message
    reply = send(conversation, bob, client_msg_id="r", reply_to_id=original.pk).message
    assert reply.reply_to_id == original.pk


def test_edit_bumps_the_version_and_keeps_history(chat):
    conversation, alice, _, _ = chat
    message = send(conversation, alice, body="first").message
    edited = edit_message(
        actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="second", expected_version=1
    )
    assert (edited.body, edited.version) == ("second", 2)
    assert edited.edited_at is not None
    assert list(MessageEdit.objects.values_list("version", "body")) == [(1, "first")]
    change = Change.objects.get(conversation=conversation, kind="message.edited")
    assert (change.seq, change.payload["version"], change.payload["body"]) == (3, 2, "second")


def test_a_stale_edit_is_refused_with_the_current_state(chat):
    conversation, alice, _, _ = chat
    message = send(conversation, alice, body="first").message
    edit_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="second", expected_version=1)
    with pytest.raises(VersionConflict) as conflict:
        edit_message(
            actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="third", expected_version=1
        )
    assert conflict.value.details == {"current_version": 2, "current_body": "second"}
    message.refresh_from_db()
    assert (message.body, message.version) == ("second", 2)


def test_repeating_a_successful_edit_is_harmless(chat):
    conversation, alice, _, _ = chat
    message = send(conversation, alice, body="first").message
    for _ in range(2):
        edited = edit_message(
            actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="second", expected_version=1
        )
    assert edited.version == 2
    assert Change.objects.filter(kind="message.edited").count() == 1


def test_only_the_sender_edits(chat):
    conversation, alice, bob, _ = chat
    message = send(conversation, alice).message
    with pytest.raises(PermissionDenied):
        edit_message(actor=bob, conversation_id=conversation.pk, message_id=message.pk, body="mine", expected_version=1)


def test_delete_leaves_a_tombstone_and_redacts_the_log(chat):
    conversation, alice, _, _ = chat
    message = send(conversation, alice, body="secret").message
    edit_message(
        actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="secret 2", expected_version=1
    )
    deleted = delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)
    assert deleted.is_deleted and deleted.body == "" and deleted.version == 3
    assert not MessageEdit.objects.filter(message=message).exists()
    log = list(Change.objects.filter(conversation=conversation).order_by("seq").values_list("kind", "payload"))
    assert [kind for kind, _ in log] == ["conversation.created", "message.created", "message.edited", "message.deleted"]
    assert all("secret" not in str(payload) for _, payload in log)
    assert log[3][1]["deleted"] is True


def test_delete_wins_over_a_later_edit_and_is_idempotent(chat):
    conversation, alice, _, _ = chat
    message = send(conversation, alice).message
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)
    with pytest.raises(MessageDeleted):
        edit_message(
            actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="back", expected_version=2
        )
    again = delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)
    assert again.version == 2
    assert Change.objects.filter(kind="message.deleted").count() == 1


def test_managers_may_delete_others_messages_members_may_not(chat, make_user):
    conversation, alice, bob, _ = chat
    by_alice = send(conversation, alice).message
    by_bob = send(conversation, bob, client_msg_id="b").message
    with pytest.raises(PermissionDenied):
        delete_message(actor=bob, conversation_id=conversation.pk, message_id=by_alice.pk)
    assert delete_message(actor=alice, conversation_id=conversation.pk, message_id=by_bob.pk).is_deleted


def test_a_message_id_from_another_conversation_is_not_found(chat):
    conversation, alice, bob, _ = chat
    other, _ = create_conversation(creator=bob, kind="group", member_ids=[])
    foreign = send(other, bob, client_msg_id="f").message
    with pytest.raises(NotFound):
        delete_message(actor=alice, conversation_id=conversation.pk, message_id=foreign.pk)
