"""REST details: every answer under /api/ is the documented JSON, query and body
input is validated as the schema says, and the schema lists what each endpoint
answers."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

NOT_FOUND = {"code": "not_found", "message": "No API endpoint at this path."}


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/nothing-here"),
        ("get", "/api/v1/conversations/null,null"),
        ("get", "/api/v1/conversations/-1"),
        ("patch", "/api/v1/conversations/abc"),
        ("get", "/api/v1/conversations/1/"),  # no trailing slashes in this API
        ("post", "/api/v1/nothing-here"),  # no CSRF refusal first: there is nothing to protect
        ("delete", "/api/v1/devices/1/extra"),
        ("get", "/api/v1"),
        ("get", "/api/v2/conversations"),
    ],
)
def test_unrouted_paths_under_api_are_a_json_404(method, path):
    response = getattr(APIClient(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND


def test_an_unrouted_path_is_the_same_404_with_credentials(make_user, api_for):
    assert api_for(make_user()).get("/api/v1/nothing-here").json() == NOT_FOUND


def test_paths_outside_the_api_keep_djangos_404():
    response = APIClient().get("/nothing-here")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_the_docs_and_schema_still_redirect_to_their_slash():
    assert APIClient().get("/api/v1/docs")["Location"] == "/api/v1/docs/"
    assert APIClient().get("/api/v1/schema?format=json")["Location"] == "/api/v1/schema/?format=json"


def test_a_method_an_endpoint_lacks_is_a_json_405_with_allow(make_user, api_for):
    response = api_for(make_user()).put("/api/v1/conversations", {}, format="json")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("offset=null", "offset"),
        ("offset=", "offset"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
    ],
)
def test_the_conversation_list_refuses_a_bad_page(make_user, api_for, query, field):
    response = api_for(make_user()).get(f"/api/v1/conversations?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("messages", "after=", "after"),
        ("messages", "before=", "before"),
        ("messages", "limit=", "limit"),
        ("changes", "after=", "after"),
        ("changes", "after=1&after=x", "after"),  # the last of a repeated name counts
    ],
)
def test_empty_query_values_are_refused_not_taken_as_absent(make_user, api_for, make_group, path, query, field):
    alice = make_user()
    conversation = make_group(alice, make_user())

    response = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}/{path}?{query}")

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_the_conversation_list_still_pages(make_user, api_for, make_group):
    alice = make_user()
    for _ in range(3):
        make_group(alice, make_user())

    page = api_for(alice).get("/api/v1/conversations?limit=2&offset=2").json()

    assert page["count"] == 3
    assert len(page["results"]) == 1


def test_unknown_member_ids_are_refused_without_naming_them(make_user, api_for):
    alice, bob = make_user(), make_user()

    response = api_for(alice).post(
        "/api/v1/conversations", {"kind": "group", "member_ids": [bob.pk, 99999]}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "member_ids"
    assert "99999" not in body["message"]
    assert str(bob.pk) not in body["message"]


def test_bodies_are_json_only(make_user, api_for, make_group):
    alice = make_user()
    conversation = make_group(alice, make_user())

    response = api_for(alice).post(
        f"/api/v1/conversations/{conversation.pk}/messages", {"client_msg_id": "m1", "body": "hi"}, format="multipart"
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"client_msg_id": "m1", "body": " \n\t\u3000"}, "body"),
        ({"client_msg_id": "m1", "body": "a\x00b"}, "body"),
        ({"client_msg_id": "  ", "body": "hi"}, "client_msg_id"),
    ],
    ids=["blank body", "NUL in the body", "blank client_msg_id"],
)
def test_text_the_schema_forbids_is_refused_by_the_serializer(make_user, api_for, make_group, body, field):
    alice = make_user()
    conversation = make_group(alice, make_user())

    response = api_for(alice).post(f"/api/v1/conversations/{conversation.pk}/messages", body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert "details" in response.json()  # the serializer's answer, as the schema describes it


def test_a_title_is_counted_as_sent_and_stored_stripped(make_user, api_for):
    alice = make_user()

    created = api_for(alice).post("/api/v1/conversations", {"kind": "group", "title": "  Trip  "}, format="json")
    too_long = api_for(alice).post("/api/v1/conversations", {"kind": "group", "title": " " + "x" * 200}, format="json")

    assert created.json()["title"] == "Trip"
    assert too_long.status_code == 400
    assert too_long.json()["field"] == "title"
