"""The OpenAPI schema and its browsable docs are served."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_schema_lists_every_endpoint():
    response = APIClient().get("/api/v1/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/members",
        "/api/v1/conversations/{conversation_id}/members/{user_id}",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/conversations/{conversation_id}/messages/{message_id}",
        "/api/v1/conversations/{conversation_id}/messages/{message_id}/receipts",
        "/api/v1/conversations/{conversation_id}/receipts",
        "/api/v1/conversations/{conversation_id}/changes",
        "/api/v1/conversations/{conversation_id}/read",
        "/api/v1/conversations/{conversation_id}/delivered",
        "/api/v1/presence",
        "/api/v1/presence/{user_id}",
    }
    edit = paths["/api/v1/conversations/{conversation_id}/messages/{message_id}"]["patch"]
    assert set(edit["responses"]) == {"200", "400", "401", "403", "404", "409", "415"}
    assert response.json()["components"]["securitySchemes"]["deviceToken"]["scheme"] == "bearer"


def schema() -> dict:
    return APIClient().get("/api/v1/schema/?format=json").json()


# Every status each operation answers with (tests/test_schemathesis.py checks the
# API against these); 401 wherever a device token or session is needed.
STATUSES = {
    ("post", "/api/v1/auth/login"): {"201", "400", "415", "429"},
    ("post", "/api/v1/auth/logout"): {"204", "401"},
    ("get", "/api/v1/devices"): {"200", "401"},
    ("delete", "/api/v1/devices/{device_id}"): {"204", "401", "404"},
    ("get", "/api/v1/conversations"): {"200", "400", "401"},
    ("post", "/api/v1/conversations"): {"200", "201", "400", "401", "415", "429"},
    ("get", "/api/v1/conversations/{conversation_id}"): {"200", "401", "404"},
    ("patch", "/api/v1/conversations/{conversation_id}"): {"200", "400", "401", "403", "404", "415"},
    ("post", "/api/v1/conversations/{conversation_id}/members"): {"201", "400", "401", "403", "404", "415", "429"},
    ("delete", "/api/v1/conversations/{conversation_id}/members/{user_id}"): {"204", "400", "401", "403", "404"},
    ("get", "/api/v1/conversations/{conversation_id}/messages"): {"200", "400", "401", "404"},
    ("post", "/api/v1/conversations/{conversation_id}/messages"): {"200", "201", "400", "401", "404", "409", "415"},
    ("patch", "/api/v1/conversations/{conversation_id}/messages/{message_id}"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "415",
    },
    ("delete", "/api/v1/conversations/{conversation_id}/messages/{message_id}"): {"200", "401", "403", "404"},
    ("get", "/api/v1/conversations/{conversation_id}/messages/{message_id}/receipts"): {"200", "401", "403", "404"},
    ("get", "/api/v1/conversations/{conversation_id}/changes"): {"200", "400", "401", "404"},
    ("post", "/api/v1/conversations/{conversation_id}/read"): {"200", "400", "401", "404", "415"},
    ("post", "/api/v1/conversations/{conversation_id}/delivered"): {"200", "400", "401", "404", "415"},
    ("get", "/api/v1/conversations/{conversation_id}/receipts"): {"200", "401", "404"},
    ("get", "/api/v1/me"): {"200", "401"},
    ("get", "/api/v1/users"): {"200", "400", "401"},
    ("get", "/api/v1/presence"): {"200", "401"},
    ("get", "/api/v1/presence/{user_id}"): {"200", "401", "404"},
}


def test_schema_lists_every_status_of_every_operation():
    paths = schema()["paths"]
    documented = {(method, path): set(op["responses"]) for path, ops in paths.items() for method, op in ops.items()}

    assert documented == STATUSES


@pytest.mark.parametrize(
    "method, path, words",
    [
        ("post", "/api/v1/auth/login", "invalid_credentials"),
        ("post", "/api/v1/conversations", "exactly one user other than you"),
        ("post", "/api/v1/conversations", "not an active user"),
        ("patch", "/api/v1/conversations/{conversation_id}", "the conversation is direct"),
        ("post", "/api/v1/conversations/{conversation_id}/members", "not an active user"),
        ("delete", "/api/v1/conversations/{conversation_id}/members/{user_id}", "the conversation is direct"),
        ("get", "/api/v1/conversations/{conversation_id}/messages", "`after` and `before` are both given"),
        ("post", "/api/v1/conversations/{conversation_id}/messages", "`reply_to` is not a message of this"),
    ],
)
def test_the_400s_name_the_rules_the_schema_cannot_state(method, path, words):
    assert words in schema()["paths"][path][method]["responses"]["400"]["description"]


def test_the_conversation_list_documents_its_page_parameters():
    parameters = schema()["paths"]["/api/v1/conversations"]["get"]["parameters"]

    assert {p["name"]: p["schema"] for p in parameters} == {
        "limit": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
    }


def test_request_text_fields_state_what_they_refuse():
    components = schema()["components"]["schemas"]
    body = components["MessageSendRequest"]["properties"]["body"]
    title = components["ConversationCreateRequest"]["properties"]["title"]

    # Not blank (whitespace only) and no NUL: the same rules the serializers apply.
    assert body["pattern"].startswith("^[^\\u0000]*[^\\u0000\\t\\n")
    assert title["pattern"] == "^[^\\u0000]*$"
    assert "requestBody" in schema()["paths"]["/api/v1/conversations"]["post"]
    assert set(schema()["paths"]["/api/v1/conversations"]["post"]["requestBody"]["content"]) == {"application/json"}


def test_docs_page_loads():
    response = APIClient().get("/api/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
