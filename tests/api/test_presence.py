"""GET /api/v1/presence and /api/v1/presence/{user_id}."""

import pytest

from conversations.services import create_conversation
from presence.services import device_online

pytestmark = pytest.mark.django_db


def test_presence_over_rest(make_user, api_for):
    alice, bob, stranger = make_user(), make_user(), make_user()
    create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    alice_api, bob_api, stranger_api = api_for(alice), api_for(bob), api_for(stranger)
    device_online(device=alice_api.device, connection_id="c", status="busy")

    listing = bob_api.get("/api/v1/presence")
    assert listing.status_code == 200
    assert {p["user_id"]: p["status"] for p in listing.json()} == {alice.pk: "busy", bob.pk: "offline"}
    one = bob_api.get(f"/api/v1/presence/{alice.pk}")
    assert one.json() == {"user_id": alice.pk, "status": "busy", "last_seen_at": None}

    hidden = stranger_api.get(f"/api/v1/presence/{alice.pk}")
    missing = stranger_api.get("/api/v1/presence/999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert stranger_api.get("/api/v1/presence").json() == [
        {"user_id": stranger.pk, "status": "offline", "last_seen_at": None}
    ]
