"""Conversation and member endpoints, and the rule that a non-member sees 404."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Change, Conversation, Membership
from delivery.services import mark_read

pytestmark = pytest.mark.django_db


def test_list_shows_members_last_message_and_unread_counts(make_user, api_for, make_group, post_message):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    conversation = make_group(alice, bob, title="Team")
    post_message(bob, conversation, "one")
    second = post_message(bob, conversation, "two")
    post_message(bob, conversation, "three")
    post_message(alice, conversation, "mine")  # own messages are never unread
    latest = post_message(bob, conversation, "four")
    mark_read(user=alice, conversation_id=conversation.pk, seq=second.seq)
    make_group(bob, carol)  # not alice's

    response = api_for(alice).get("/api/v1/conversations")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert item["id"] == conversation.pk
    assert item["kind"] == "group"
    assert item["title"] == "Team"
    assert item["created_by"] == alice.pk
    assert item["last_seq"] == latest.seq
    assert item["read_seq"] == second.seq
    assert item["unread_count"] == 2  # "three" and "four"
    assert [(m["user"], m["role"]) for m in item["members"]] == [
        ({"id": alice.pk, "username": "alice"}, "owner"),
        ({"id": bob.pk, "username": "bob"}, "member"),
    ]
    assert item["last_message"]["id"] == latest.pk
    assert item["last_message"]["body"] == "four"
    assert item["last_message"]["seq"] == latest.seq
    assert item["last_message"]["deleted"] is False

    bobs = api_for(bob).get("/api/v1/conversations").json()["results"]
    assert {c["id"]: c["unread_count"] for c in bobs}[conversation.pk] == 1  # alice's "mine"; his own never count


def test_list_without_messages_has_null_last_message(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    make_group(alice, bob)

    (item,) = api_for(alice).get("/api/v1/conversations").json()["results"]

    assert item["last_message"] is None
    assert item["unread_count"] == 0
    assert item["read_seq"] == 0


def test_list_query_count_does_not_grow_with_conversations(make_user, api_for, make_group, post_message):
    alice = make_user()
    client = api_for(alice)
    client.get("/api/v1/devices")  # the device's first use writes last_used_at; keep it out of the count

    def add_conversations(n):
        for _ in range(n):
            other = make_user()
            conversation = make_group(alice, other)
            post_message(other, conversation)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/conversations").status_code == 200
        return len(captured)

    add_conversations(2)
    few = queries()
    add_conversations(5)
    many = queries()

    assert len(client.get("/api/v1/conversations").json()["results"]) == 7
    assert many == few


def test_list_is_paginated_by_limit_and_offset(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    created = {make_group(alice, bob, title=t).pk for t in ("a", "b", "c")}
    client = api_for(alice)

    everything = [c["id"] for c in client.get("/api/v1/conversations").json()["results"]]
    page = client.get("/api/v1/conversations?limit=2").json()
    rest = client.get("/api/v1/conversations?limit=2&offset=2").json()

    assert set(everything) == created
    assert page["count"] == 3
    assert [c["id"] for c in page["results"]] == everything[:2]
    assert page["next"] is not None
    assert [c["id"] for c in rest["results"]] == everything[2:]
    assert rest["next"] is None


def test_create_group_returns_201_with_creator_as_owner(make_user, api_for):
    alice, bob, carol = make_user(), make_user(), make_user()

    response = api_for(alice).post(
        "/api/v1/conversations", {"kind": "group", "title": "Trip", "member_ids": [bob.pk, carol.pk]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    conversation = Conversation.objects.get(pk=body["id"])
    assert conversation.title == "Trip"
    assert body["kind"] == "group"
    assert body["last_seq"] == 1
    assert {m["user"]["id"]: m["role"] for m in body["members"]} == {
        alice.pk: "owner",
        bob.pk: "member",
        carol.pk: "member",
    }


def test_create_direct_twice_returns_the_existing_one_with_200(make_user, api_for):
    alice, bob = make_user(), make_user()

    first = api_for(alice).post("/api/v1/conversations", {"kind": "direct", "member_ids": [bob.pk]}, format="json")
    again = api_for(bob).post("/api/v1/conversations", {"kind": "direct", "member_ids": [alice.pk]}, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Conversation.objects.filter(kind="direct").count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "chat", "member_ids": []}, "kind"),
        ({"member_ids": []}, "kind"),
        ({"kind": "group", "member_ids": "bob"}, "member_ids"),
        ({"kind": "group", "member_ids": [999_999]}, "member_ids"),  # checked by the service
        ({"kind": "direct", "member_ids": []}, "member_ids"),
        ({"kind": "group", "title": "x" * 201}, "title"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(make_user, api_for, body, field):
    response = api_for(make_user()).post("/api/v1/conversations", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["field"] == field
    assert Conversation.objects.count() == 0


def test_get_one_conversation(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob, title="Team")
    message = post_message(bob, conversation, "hi")

    response = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["title"], body["unread_count"]) == (conversation.pk, "Team", 1)
    assert body["last_message"]["id"] == message.pk
    assert [m["user"]["id"] for m in body["members"]] == [alice.pk, bob.pk]


def test_rename_by_the_owner_logs_a_change(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob, title="Old")

    response = api_for(alice).patch(f"/api/v1/conversations/{conversation.pk}", {"title": "New"}, format="json")

    assert response.status_code == 200
    assert response.json()["title"] == "New"
    assert response.json()["last_seq"] == 2
    change = Change.objects.get(conversation=conversation, seq=2)
    assert change.kind == "conversation.renamed"
    assert (change.payload["title"], change.payload["previous_title"]) == ("New", "Old")


def test_rename_by_a_plain_member_is_403(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob, title="Old")

    response = api_for(bob).patch(f"/api/v1/conversations/{conversation.pk}", {"title": "Mine"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    conversation.refresh_from_db()
    assert conversation.title == "Old"


def test_rename_without_title_is_400_naming_it(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob, title="Old")

    response = api_for(alice).patch(f"/api/v1/conversations/{conversation.pk}", {}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "title"


def test_add_member_returns_201_and_the_member_sees_the_conversation(make_user, api_for, make_group):
    alice, bob, carol = make_user(), make_user(), make_user("carol")
    conversation = make_group(alice, bob)

    response = api_for(alice).post(
        f"/api/v1/conversations/{conversation.pk}/members", {"user_id": carol.pk, "role": "admin"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["user"] == {"id": carol.pk, "username": "carol"}
    assert body["role"] == "admin"
    assert body["joined_at"]
    assert api_for(carol).get(f"/api/v1/conversations/{conversation.pk}").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [({"user_id": "carol"}, "user_id"), ({}, "user_id"), ({"user_id": 999_999}, "user_id"), ("owner", "role")],
)
def test_add_member_rejects_bad_input_naming_the_field(make_user, api_for, make_group, body, field):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation = make_group(alice, bob)
    if body == "owner":
        body = {"user_id": carol.pk, "role": "owner"}

    response = api_for(alice).post(f"/api/v1/conversations/{conversation.pk}/members", body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Membership.objects.filter(conversation=conversation, user=carol).exists()


def test_add_member_by_a_plain_member_is_403(make_user, api_for, make_group):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation = make_group(alice, bob)

    response = api_for(bob).post(
        f"/api/v1/conversations/{conversation.pk}/members", {"user_id": carol.pk}, format="json"
    )

    assert response.status_code == 403


def test_remove_member_returns_204_and_they_lose_access(make_user, api_for, make_group):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation = make_group(alice, bob, carol)
    carols = api_for(carol)

    response = api_for(alice).delete(f"/api/v1/conversations/{conversation.pk}/members/{carol.pk}")

    assert response.status_code == 204
    assert carols.get(f"/api/v1/conversations/{conversation.pk}").status_code == 404
    members = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}").json()["members"]
    assert [m["user"]["id"] for m in members] == [alice.pk, bob.pk]


def test_removing_yourself_leaves(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    bobs = api_for(bob)

    response = bobs.delete(f"/api/v1/conversations/{conversation.pk}/members/{bob.pk}")

    assert response.status_code == 204
    assert bobs.get("/api/v1/conversations").json()["results"] == []
    assert Change.objects.get(conversation=conversation, seq=2).kind == "member.removed"


def test_removing_the_owner_is_403(make_user, api_for, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    Membership.objects.filter(user=bob).update(role="admin")

    response = api_for(bob).delete(f"/api/v1/conversations/{conversation.pk}/members/{alice.pk}")

    assert response.status_code == 403
    assert Membership.objects.get(user=alice, conversation=conversation).is_active


# A non-member must not be able to tell a conversation exists.
NON_MEMBER_REQUESTS = [
    ("get", "/api/v1/conversations/{id}", None),
    ("patch", "/api/v1/conversations/{id}", {"title": "x"}),
    ("post", "/api/v1/conversations/{id}/members", {"user_id": "{me}"}),
    ("delete", "/api/v1/conversations/{id}/members/{me}", None),
    ("get", "/api/v1/conversations/{id}/messages", None),
    ("post", "/api/v1/conversations/{id}/messages", {"client_msg_id": "probe", "body": "hi"}),
    ("patch", "/api/v1/conversations/{id}/messages/{message}", {"body": "x", "version": 1}),
    ("delete", "/api/v1/conversations/{id}/messages/{message}", None),
    ("get", "/api/v1/conversations/{id}/changes", None),
    ("post", "/api/v1/conversations/{id}/read", {"seq": 1}),
    ("post", "/api/v1/conversations/{id}/delivered", {"seq": 1}),
    ("get", "/api/v1/conversations/{id}/messages/{message}/receipts", None),
]


@pytest.mark.parametrize("method, template, body", NON_MEMBER_REQUESTS)
def test_non_member_gets_the_same_404_as_for_a_missing_conversation(
    make_user, api_for, make_group, post_message, method, template, body
):
    alice, bob, mallory = make_user(), make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation)
    missing_id = Conversation.objects.order_by("-pk").first().pk + 100
    client = api_for(mallory)

    def call(conversation_id):
        def fill(text):
            return text.format(id=conversation_id, me=mallory.pk, message=message.pk)

        data = {k: int(fill(v)) if v == "{me}" else v for k, v in body.items()} if body else None
        return getattr(client, method)(fill(template), data, format="json")

    hidden, missing = call(conversation.pk), call(missing_id)

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json() == {"code": "not_found", "message": "Conversation not found."}
    assert Change.objects.filter(conversation=conversation).count() == 2  # created + the message; nothing more
