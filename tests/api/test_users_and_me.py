"""GET /api/v1/users (finding people to talk to), GET /api/v1/me, GET
/api/v1/conversations/{id}/receipts and the createuser command."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from conversations.services import create_conversation
from delivery.services import mark_delivered, mark_read

pytestmark = pytest.mark.django_db


def usernames(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [u["username"] for u in response.json()["results"]]


def test_search_finds_active_users_but_me_by_username_any_case(make_user, api_for):
    alice = make_user("alice")
    for name in ("bob", "Bobby", "carol", "robert"):
        make_user(name)
    make_user("bobgone", is_active=False)
    api = api_for(alice)

    assert usernames(api.get("/api/v1/users", {"search": "BOB"})) == ["bob", "Bobby"]
    assert usernames(api.get("/api/v1/users", {"search": "ob"})) == ["bob", "Bobby", "robert"]
    assert usernames(api.get("/api/v1/users")) == ["bob", "Bobby", "carol", "robert"]
    assert usernames(api.get("/api/v1/users", {"search": "alice"})) == []
    first = api.get("/api/v1/users", {"limit": 2}).json()
    assert [u["username"] for u in first["results"]] == ["bob", "Bobby"]
    assert first["has_more"] is True
    assert set(first["results"][0]) == {"id", "username"}


def test_search_scope_shared_finds_only_people_sharing_a_conversation(make_user, api_for, settings):
    settings.USER_SEARCH_SCOPE = "shared"
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_user("bobcat")
    create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    create_conversation(creator=bob, kind="group", member_ids=[carol.pk])

    assert usernames(api_for(alice).get("/api/v1/users", {"search": "bo"})) == ["bob"]
    assert usernames(api_for(bob).get("/api/v1/users")) == ["alice", "carol"]


def test_search_refuses_bad_query_values(make_user, api_for):
    api = api_for(make_user())
    for query in ({"limit": 0}, {"limit": "x"}, {"search": "a" * 151}):
        response = api.get("/api/v1/users", query)
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid"


def test_search_and_me_need_a_login(make_user):
    for path in ("/api/v1/users", "/api/v1/me"):
        assert APIClient().get(path).status_code == 401


def test_me_with_a_token_names_the_device(make_user, api_for):
    alice = make_user("alice")
    api = api_for(alice, "Pixel")
    body = api.get("/api/v1/me").json()

    assert body["id"] == alice.pk
    assert body["username"] == "alice"
    assert body["is_staff"] is False
    assert body["device"]["id"] == api.device.pk
    assert body["device"]["name"] == "Pixel"
    assert body["device"]["current"] is True


def test_me_with_a_session_has_no_device(make_user):
    alice = make_user("alice", is_staff=True)
    client = Client()
    client.force_login(alice)
    body = client.get("/api/v1/me").json()

    assert body == {"id": alice.pk, "username": "alice", "is_staff": True, "device": None}


def test_conversation_receipts_list_every_member(make_user, api_for, make_group, post_message):
    alice, bob, carol, stranger = make_user(), make_user(), make_user(), make_user()
    team = make_group(alice, bob, carol)
    message = post_message(alice, team)
    mark_read(user=bob, conversation_id=team.pk, seq=message.seq)
    mark_delivered(user=carol, conversation_id=team.pk, seq=message.seq)

    response = api_for(carol).get(f"/api/v1/conversations/{team.pk}/receipts")
    assert response.status_code == 200
    assert response.json() == {
        "conversation_id": team.pk,
        "receipts": [
            {"user_id": alice.pk, "delivered_seq": 0, "read_seq": 0},
            {"user_id": bob.pk, "delivered_seq": message.seq, "read_seq": message.seq},
            {"user_id": carol.pk, "delivered_seq": message.seq, "read_seq": 0},
        ],
    }
    hidden = api_for(stranger).get(f"/api/v1/conversations/{team.pk}/receipts")
    missing = api_for(stranger).get("/api/v1/conversations/999999/receipts")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_createuser_makes_a_user_who_can_log_in(db):
    out = io.StringIO()
    call_command("createuser", "dora", "--password-stdin", stdin=io.StringIO("explorer-map-42\n"), stdout=out)

    dora = get_user_model().objects.get(username="dora")
    assert dora.check_password("explorer-map-42")
    assert not dora.is_staff and not dora.is_superuser
    assert f"(id {dora.pk})" in out.getvalue()
    login = APIClient().post(
        "/api/v1/auth/login",
        {"username": "dora", "password": "explorer-map-42", "device_name": "cli"},
        format="json",
    )
    assert login.status_code == 201


def test_createuser_refuses_a_taken_name_and_a_weak_password(make_user):
    make_user("erin")
    with pytest.raises(CommandError, match="exists already"):
        call_command("createuser", "erin", "--password-stdin", stdin=io.StringIO("explorer-map-42\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("createuser", "fred", "--password-stdin", stdin=io.StringIO("abc\n"))
    assert not get_user_model().objects.filter(username="fred").exists()
    call_command("createuser", "fred", "--password-stdin", "--no-validate", stdin=io.StringIO("abc\n"))
    assert get_user_model().objects.get(username="fred").check_password("abc")


def test_createuser_without_a_terminal_asks_for_stdin(db):
    with pytest.raises(CommandError, match="--password-stdin"):
        call_command("createuser", "gus", stdin=io.StringIO(""))
