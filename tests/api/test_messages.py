"""Message endpoints: send (idempotent), page by seq, edit, delete, and the change log."""

import pytest

from conversations.models import Change, Message

pytestmark = pytest.mark.django_db


def messages_url(conversation, message=None):
    url = f"/api/v1/conversations/{conversation.pk}/messages"
    return f"{url}/{message}" if message is not None else url


def send(client, conversation, client_msg_id, body="hello", **extra):
    data = {"client_msg_id": client_msg_id, "body": body, **extra}
    return client.post(messages_url(conversation), data, format="json")


def test_send_returns_201_with_the_message_and_its_device(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    client = api_for(alice)

    response = send(client, conversation, "c-1", "  hi there  ")

    assert response.status_code == 201
    body = response.json()
    message = Message.objects.get()
    assert body["id"] == message.pk
    assert body["conversation_id"] == conversation.pk
    assert body["seq"] == 2
    assert body["sender"] == alice.pk
    assert body["sender_device"] == client.device.pk
    assert body["client_msg_id"] == "c-1"
    assert body["body"] == "  hi there  "  # sent as typed
    assert body["version"] == 1
    assert body["reply_to"] is None
    assert body["deleted"] is False


def test_a_retried_send_returns_200_with_the_original(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    client = api_for(alice)

    first = send(client, conversation, "c-1", "hello")
    retry = send(client, conversation, "c-1", "hello")

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["seq"] == first.json()["seq"]
    assert Message.objects.count() == 1


def test_reusing_a_client_msg_id_in_another_conversation_is_409(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    one, other = make_group(alice, bob), make_group(alice, bob)
    client = api_for(alice)
    send(client, one, "c-1")

    response = send(client, other, "c-1")

    assert response.status_code == 409
    assert response.json()["code"] == "client_msg_id_conflict"
    assert response.json()["field"] == "client_msg_id"


def test_reply_to_links_a_message_of_the_same_conversation(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation, elsewhere = make_group(alice, bob), make_group(alice, bob)
    original = post_message(bob, conversation)
    foreign = post_message(bob, elsewhere)
    client = api_for(alice)

    reply = send(client, conversation, "r-1", reply_to=original.pk)
    wrong = send(client, conversation, "r-2", reply_to=foreign.pk)

    assert reply.status_code == 201
    assert reply.json()["reply_to"] == original.pk
    assert wrong.status_code == 400
    assert wrong.json()["field"] == "reply_to"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"body": "hi"}, "client_msg_id"),
        ({"client_msg_id": "c", "body": ""}, "body"),
        ({"client_msg_id": "c", "body": "   "}, "body"),  # blank after all, checked by the service
        ({"client_msg_id": "c", "body": "x" * 4001}, "body"),
        ({"client_msg_id": "c" * 65, "body": "hi"}, "client_msg_id"),
        ({"client_msg_id": "c", "body": "hi", "reply_to": "first"}, "reply_to"),
    ],
)
def test_send_rejects_bad_input_naming_the_field(make_user, api_for, make_group, body, field):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)

    response = api_for(alice).post(messages_url(conversation), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["field"] == field
    assert Message.objects.count() == 0


@pytest.fixture
def five_messages(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    seqs = [post_message(bob, conversation, f"m{i}").seq for i in range(5)]
    return api_for(alice), conversation, seqs


def page(client, conversation, query):
    response = client.get(f"{messages_url(conversation)}?{query}")
    assert response.status_code == 200, response.json()
    body = response.json()
    return [m["seq"] for m in body["results"]], body["has_more"], body["next_after"], body["next_before"]


def test_messages_page_forward_with_after(five_messages):
    client, conversation, seqs = five_messages

    assert page(client, conversation, "after=0&limit=2") == (seqs[0:2], True, seqs[1], seqs[0])
    assert page(client, conversation, f"after={seqs[1]}&limit=2") == (seqs[2:4], True, seqs[3], seqs[2])
    assert page(client, conversation, f"after={seqs[3]}&limit=2") == (seqs[4:5], False, seqs[4], seqs[4])
    assert page(client, conversation, f"after={seqs[4]}&limit=2") == ([], False, seqs[4], None)


def test_messages_page_backward_with_before(five_messages):
    client, conversation, seqs = five_messages

    assert page(client, conversation, "limit=2") == (seqs[3:5], True, seqs[4], seqs[3])
    assert page(client, conversation, f"before={seqs[3]}&limit=2") == (seqs[1:3], True, seqs[2], seqs[1])
    assert page(client, conversation, f"before={seqs[1]}&limit=2") == (seqs[0:1], False, seqs[0], seqs[0])
    assert page(client, conversation, f"before={seqs[0]}&limit=2") == ([], False, None, seqs[0])


def test_messages_page_includes_tombstones_without_their_body(five_messages):
    client, conversation, seqs = five_messages
    deleted = Message.objects.get(seq=seqs[0])
    client.delete(messages_url(conversation, deleted.pk))

    first = client.get(f"{messages_url(conversation)}?after=0&limit=1").json()["results"][0]

    assert (first["id"], first["deleted"], first["body"]) == (deleted.pk, True, "")


@pytest.mark.parametrize(
    "query, field",
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("before=-5", "before"),
        ("before=1.5", "before"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("after=1&before=3", "before"),
        ("after=99999999999999999999", "after"),
    ],
)
def test_messages_page_rejects_bad_cursors_naming_the_field(five_messages, query, field):
    client, conversation, _ = five_messages

    response = client.get(f"{messages_url(conversation)}?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["field"] == field


def test_edit_returns_the_new_version(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation, "helo")

    response = api_for(alice).patch(
        messages_url(conversation, message.pk), {"body": "hello", "version": 1}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["body"], body["version"]) == (message.pk, "hello", 2)
    assert body["edited_at"] is not None
    assert Change.objects.filter(conversation=conversation, kind="message.edited").count() == 1


def test_edit_on_a_stale_version_is_409_with_the_current_state(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation, "v1")
    client = api_for(alice)
    client.patch(messages_url(conversation, message.pk), {"body": "v2", "version": 1}, format="json")

    response = client.patch(messages_url(conversation, message.pk), {"body": "other", "version": 1}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "version_conflict"
    assert body["details"] == {"current_version": 2, "current_body": "v2"}
    message.refresh_from_db()
    assert (message.body, message.version) == ("v2", 2)


def test_edit_by_someone_else_is_403(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(bob, conversation, "mine")

    response = api_for(alice).patch(
        messages_url(conversation, message.pk), {"body": "yours", "version": 1}, format="json"
    )

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.body == "mine"


@pytest.mark.parametrize(
    "body, field", [({"body": "x"}, "version"), ({"version": 1}, "body"), ({"body": "x", "version": "one"}, "version")]
)
def test_edit_rejects_bad_input_naming_the_field(make_user, api_for, make_group, post_message, body, field):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation)

    response = api_for(alice).patch(messages_url(conversation, message.pk), body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_edit_of_a_missing_message_is_404(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)

    response = api_for(alice).patch(messages_url(conversation, 999_999), {"body": "x", "version": 1}, format="json")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Message not found."}


def test_delete_returns_the_tombstone_and_a_later_edit_is_409_message_deleted(
    make_user, api_for, make_group, post_message
):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation, "secret")
    client = api_for(alice)

    deleted = client.delete(messages_url(conversation, message.pk))
    edit = client.patch(messages_url(conversation, message.pk), {"body": "back", "version": 2}, format="json")

    assert deleted.status_code == 200
    tombstone = deleted.json()
    assert (tombstone["id"], tombstone["deleted"], tombstone["body"], tombstone["version"]) == (
        message.pk,
        True,
        "",
        2,
    )
    assert tombstone["deleted_at"] is not None
    assert edit.status_code == 409
    assert edit.json()["code"] == "message_deleted"
    assert edit.json()["details"] == {"current_version": 2}


def test_delete_of_someone_elses_message_by_a_plain_member_is_403(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation)

    response = api_for(bob).delete(messages_url(conversation, message.pk))

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.deleted_at is None


def test_changes_after_a_seq(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob, title="Old")
    client = api_for(alice)
    sent = send(client, conversation, "c-1", "first").json()
    send(client, conversation, "c-2", "second")
    client.patch(f"/api/v1/conversations/{conversation.pk}", {"title": "New"}, format="json")
    url = f"/api/v1/conversations/{conversation.pk}/changes"

    everything = client.get(url).json()
    after_1 = client.get(f"{url}?after=1").json()
    limited = client.get(f"{url}?after=1&limit=1").json()
    none_left = client.get(f"{url}?after=4").json()

    assert [c["kind"] for c in everything["changes"]] == [
        "conversation.created",
        "message.created",
        "message.created",
        "conversation.renamed",
    ]
    assert [c["seq"] for c in after_1["changes"]] == [2, 3, 4]
    assert after_1["has_more"] is False
    assert after_1["last_seq"] == 4
    first = after_1["changes"][0]
    assert first["payload"]["id"] == sent["id"]
    assert first["payload"]["body"] == "first"
    assert first["actor"] == alice.pk
    assert first["created_at"]
    assert after_1["changes"][2]["payload"]["title"] == "New"
    assert ([c["seq"] for c in limited["changes"]], limited["has_more"], limited["last_seq"]) == ([2], True, 2)
    assert (none_left["changes"], none_left["has_more"], none_left["last_seq"]) == ([], False, 4)


@pytest.mark.parametrize("query, field", [("after=-1", "after"), ("after=x", "after"), ("limit=0", "limit")])
def test_changes_reject_bad_cursors_naming_the_field(make_user, api_for, make_group, query, field):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)

    response = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}/changes?{query}")

    assert response.status_code == 400
    assert response.json()["field"] == field
