"""The message admin edits and deletes through the services, as a moderator."""

import json

from django.contrib.admin.models import LogEntry
from django.urls import reverse

from conversations.models import Change, Conversation, Message, MessageEdit
from conversations.payloads import message_payload
from conversations.services import edit_message, send_message
from core.events import dumps

from .helpers import change_form_data

CHANGELIST = reverse("admin:conversations_message_changelist")


def change_url(message):
    return reverse("admin:conversations_message_change", args=[message.pk])


def delete_url(message):
    return reverse("admin:conversations_message_delete", args=[message.pk])


def as_stored(payload):
    return json.loads(dumps(payload))


def test_only_the_body_is_editable(admin_client, world):
    form = admin_client.get(change_url(world["hello"])).context["adminform"].form
    assert set(form.fields) == {"body", "expected_version"}
    assert form["expected_version"].value() == 1


def test_editing_the_body_is_a_moderator_edit(admin_client, admin_user, world, published):
    hello = world["hello"]
    form = admin_client.get(change_url(hello))
    response = admin_client.post(change_url(hello), change_form_data(form, body="hello everyone"))
    assert response.status_code == 302

    hello.refresh_from_db()
    assert (hello.body, hello.version) == ("hello everyone", 2)
    assert hello.edited_at is not None
    earlier = MessageEdit.objects.get(message=hello)
    assert (earlier.version, earlier.body, earlier.edited_by) == (1, "hello team", admin_user)

    conversation = Conversation.objects.get(pk=hello.conversation_id)
    change = Change.objects.get(conversation=conversation, seq=conversation.last_seq)
    assert (change.kind, change.actor, change.message) == ("message.edited", admin_user, hello)
    assert change.payload == as_stored({**message_payload(hello), "edited_by": admin_user.pk})
    assert published == [("message.edited", conversation.pk, conversation.last_seq, [])]
    assert LogEntry.objects.get(object_id=str(hello.pk)).get_change_message() == "Changed Body."


def test_admin_edit_matches_a_service_edit(admin_client, admin_user, world):
    """The same edit through the admin and through the service leaves the same state."""
    hello, secret = world["hello"], world["secret"]
    form = admin_client.get(change_url(hello))
    admin_client.post(change_url(hello), change_form_data(form, body="new text"))
    edit_message(
        actor=admin_user,
        conversation_id=secret.conversation_id,
        message_id=secret.pk,
        body="new text",
        expected_version=1,
        as_moderator=True,
    )
    by_admin = Change.objects.filter(message=hello).latest("seq")
    by_service = Change.objects.filter(message=secret).latest("seq")
    ignored = {"id", "conversation_id", "seq", "sender", "sender_device", "client_msg_id", "created_at", "edited_at"}

    def comparable(payload):
        return {key: value for key, value in payload.items() if key not in ignored}

    assert comparable(by_admin.payload) == comparable(by_service.payload)
    assert (by_admin.kind, by_admin.actor) == (by_service.kind, by_service.actor)


def test_a_stale_edit_is_refused_and_changes_nothing(admin_client, world, published):
    hello, alice = world["hello"], world["alice"]
    form = admin_client.get(change_url(hello))  # shows version 1
    edit_message(
        actor=alice, conversation_id=hello.conversation_id, message_id=hello.pk, body="by alice", expected_version=1
    )
    published.clear()
    last_seq = Conversation.objects.get(pk=hello.conversation_id).last_seq

    response = admin_client.post(change_url(hello), change_form_data(form, body="by the admin"), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(change_url(hello), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "The message was changed since that version. Nothing was saved. "
        "The message is now at version 2; this page shows it."
    ]
    # The reloaded page offers the current body at the current version.
    form = response.context["adminform"].form
    assert (form["body"].value(), form["expected_version"].value()) == ("by alice", 2)
    hello.refresh_from_db()
    assert (hello.body, hello.version) == ("by alice", 2)
    assert Conversation.objects.get(pk=hello.conversation_id).last_seq == last_seq
    assert MessageEdit.objects.filter(message=hello).count() == 1
    assert not LogEntry.objects.exists()
    assert published == []


def test_saving_an_unchanged_multiline_body_is_not_an_edit(admin_client, world, published):
    bob = world["bob"]
    message = send_message(sender=bob, conversation_id=world["group"].pk, client_msg_id="ml", body="one\ntwo").message
    published.clear()
    form = admin_client.get(change_url(message))
    # Browsers send textarea line breaks as CRLF.
    response = admin_client.post(change_url(message), change_form_data(form, body="one\r\ntwo"))
    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.body, message.version) == ("one\ntwo", 1)
    assert published == []


def test_a_blank_body_is_a_form_error(admin_client, world):
    hello = world["hello"]
    form = admin_client.get(change_url(hello))
    response = admin_client.post(change_url(hello), change_form_data(form, body="   "))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["body"]
    hello.refresh_from_db()
    assert (hello.body, hello.version) == ("hello team", 1)


def test_messages_cannot_be_added(admin_client, world):
    assert admin_client.get(reverse("admin:conversations_message_add")).status_code == 403


def assert_tombstone(message, admin_user):
    message.refresh_from_db()
    assert message.deleted_at is not None
    assert message.body == ""
    deleted = Change.objects.filter(message=message).latest("seq")
    assert (deleted.kind, deleted.actor) == ("message.deleted", admin_user)
    assert deleted.payload["deleted"] is True and deleted.payload["deleted_by"] == admin_user.pk
    assert deleted.payload["version"] == message.version
    # Earlier log entries no longer hand out the text.
    assert all(change.payload.get("body") == "" for change in Change.objects.filter(message=message))


def test_delete_leaves_a_tombstone(admin_client, admin_user, world, published):
    agenda = world["agenda"]
    confirm = admin_client.get(delete_url(agenda))
    assert confirm.status_code == 200
    assert confirm.context["deleted_objects"] == [f"{agenda}: agenda v2"]

    response = admin_client.post(delete_url(agenda), {"post": "yes"})
    assert response.status_code == 302

    assert_tombstone(agenda, admin_user)
    assert agenda.version == 3
    assert not MessageEdit.objects.filter(message=agenda).exists()
    assert [kind for kind, *_ in published] == ["message.deleted"]


def test_bulk_delete_action_leaves_tombstones(admin_client, admin_user, world, published):
    hello, secret, agenda = world["hello"], world["secret"], world["agenda"]
    selection = {"action": "delete_selected", "_selected_action": [hello.pk, secret.pk]}
    confirm = admin_client.post(CHANGELIST, selection)
    assert confirm.status_code == 200
    (listed,) = confirm.context["deletable_objects"]
    assert sorted(listed) == sorted([f"{hello}: hello team", f"{secret}: just us"])

    response = admin_client.post(CHANGELIST, {**selection, "post": "yes"})
    assert response.status_code == 302

    assert Message.objects.count() == 3
    assert_tombstone(hello, admin_user)
    assert_tombstone(secret, admin_user)
    agenda.refresh_from_db()
    assert (agenda.body, agenda.deleted_at) == ("agenda v2", None)
    assert sorted((kind, cid) for kind, cid, *_ in published) == sorted(
        [("message.deleted", hello.conversation_id), ("message.deleted", secret.conversation_id)]
    )


def test_a_tombstone_is_view_only(admin_client, admin_user, world):
    hello = world["hello"]
    admin_client.post(delete_url(hello), {"post": "yes"})
    response = admin_client.get(change_url(hello))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content and "deletelink" not in content
    assert "expected_version" not in content
    assert admin_client.post(change_url(hello), {"body": "back", "expected_version": 2}).status_code == 403
    assert admin_client.post(delete_url(hello), {"post": "yes"}).status_code == 403
