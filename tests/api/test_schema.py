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
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/members",
        "/api/v1/conversations/{conversation_id}/members/{user_id}",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/conversations/{conversation_id}/messages/{message_id}",
        "/api/v1/conversations/{conversation_id}/messages/{message_id}/receipts",
        "/api/v1/conversations/{conversation_id}/changes",
        "/api/v1/conversations/{conversation_id}/read",
        "/api/v1/conversations/{conversation_id}/delivered",
        "/api/v1/presence",
        "/api/v1/presence/{user_id}",
    }
    edit = paths["/api/v1/conversations/{conversation_id}/messages/{message_id}"]["patch"]
    assert set(edit["responses"]) == {"200", "400", "401", "403", "404", "409"}
    assert response.json()["components"]["securitySchemes"]["deviceToken"]["scheme"] == "bearer"


def test_docs_page_loads():
    response = APIClient().get("/api/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
