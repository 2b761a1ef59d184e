"""Log-in, log-out, device listing and revocation, token and session auth."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def login(client, **body):
    return client.post("/api/v1/auth/login", body, format="json")


def test_login_creates_a_device_whose_token_authenticates(make_user):
    alice = make_user("alice")
    response = login(APIClient(), username="alice", password=PASSWORD, device_name="Pixel")

    assert response.status_code == 201
    body = response.json()
    device = Device.objects.get(user=alice)
    assert body["user"] == {"id": alice.pk, "username": "alice"}
    assert body["device"]["id"] == device.pk
    assert body["device"]["name"] == "Pixel"
    assert body["device"]["current"] is True
    assert body["device"]["is_active"] is True
    assert body["device"]["created_at"]
    assert "password" not in body

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    listed = client.get("/api/v1/devices")
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()] == [device.pk]


def test_login_with_a_wrong_password_is_400_invalid_credentials(make_user):
    make_user("alice")
    response = login(APIClient(), username="alice", password="wrong", device_name="Pixel")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert Device.objects.count() == 0


def test_login_without_device_name_is_400_naming_it(make_user):
    make_user("alice")
    response = login(APIClient(), username="alice", password=PASSWORD)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["field"] == "device_name"
    assert list(body["details"]["fields"]) == ["device_name"]


def test_login_ignores_a_stale_token(make_user):
    make_user("alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer revoked-or-made-up")
    response = login(client, username="alice", password=PASSWORD, device_name="Pixel")

    assert response.status_code == 201


def test_login_is_throttled(make_user):
    make_user("alice")
    client = APIClient()
    statuses = [login(client, username="alice", password="wrong", device_name="x").status_code for _ in range(20)]
    blocked = login(client, username="alice", password=PASSWORD, device_name="x")

    assert statuses == [400] * 20
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "throttled"
    assert int(blocked["Retry-After"]) > 0
    assert Device.objects.count() == 0


def test_login_works_while_the_throttles_cache_is_unreachable(make_user, settings, caplog):
    """A Redis outage lets logins through (unthrottled) rather than failing them."""
    make_user("alice")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    response = login(APIClient(), username="alice", password=PASSWORD, device_name="x")

    assert response.status_code == 201, response.content
    assert "login throttle not applied" in caplog.text


def test_requests_without_credentials_are_401_with_bearer_challenge():
    response = APIClient().get("/api/v1/conversations")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_logout_revokes_the_requesting_device_only(make_user, api_for):
    alice = make_user()
    phone, laptop = api_for(alice, "phone"), api_for(alice, "laptop")

    response = phone.post("/api/v1/auth/logout")

    assert response.status_code == 204
    phone.device.refresh_from_db()
    laptop.device.refresh_from_db()
    assert phone.device.revoked_at is not None
    assert laptop.device.revoked_at is None
    assert phone.get("/api/v1/devices").status_code == 401
    assert laptop.get("/api/v1/devices").status_code == 200


def test_logout_with_a_session_ends_the_session(make_user):
    alice = make_user()
    client = APIClient()
    client.force_login(alice)
    assert client.get("/api/v1/devices").status_code == 200

    response = client.post("/api/v1/auth/logout")

    assert response.status_code == 204
    assert client.get("/api/v1/devices").status_code == 401


def test_device_list_shows_only_my_devices_newest_first_marking_the_current(make_user, make_device, api_for):
    alice, bob = make_user(), make_user()
    older, _ = make_device(alice, "old phone")
    Device.objects.filter(pk=older.pk).update(created_at=timezone.now() - timezone.timedelta(days=1))
    make_device(bob, "bob's phone")
    client = api_for(alice, "laptop")

    response = client.get("/api/v1/devices")

    assert response.status_code == 200
    devices = response.json()
    assert [(d["id"], d["name"], d["current"]) for d in devices] == [
        (client.device.pk, "laptop", True),
        (older.pk, "old phone", False),
    ]
    assert devices[0]["last_used_at"] is not None  # the request itself used it
    assert devices[1]["revoked_at"] is None


def test_revoking_a_device_stops_its_token(make_user, api_for):
    alice = make_user()
    laptop, phone = api_for(alice, "laptop"), api_for(alice, "phone")

    response = laptop.delete(f"/api/v1/devices/{phone.device.pk}")

    assert response.status_code == 204
    assert phone.get("/api/v1/conversations").status_code == 401
    listed = {d["id"]: d for d in laptop.get("/api/v1/devices").json()}
    assert listed[phone.device.pk]["is_active"] is False
    assert listed[phone.device.pk]["revoked_at"] is not None
    assert listed[laptop.device.pk]["is_active"] is True


def test_revoking_someone_elses_device_is_404_and_leaves_it_active(make_user, make_device, api_for):
    alice, bob = make_user(), make_user()
    bobs_device, bobs_token = make_device(bob)

    response = api_for(alice).delete(f"/api/v1/devices/{bobs_device.pk}")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Device not found."}
    bobs_device.refresh_from_db()
    assert bobs_device.revoked_at is None


def test_session_auth_works_for_reads_and_writes(make_user, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    client = APIClient()
    client.force_login(alice)

    listed = client.get("/api/v1/conversations")
    sent = client.post(
        f"/api/v1/conversations/{conversation.pk}/messages", {"client_msg_id": "s1", "body": "hi"}, format="json"
    )

    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["results"]] == [conversation.pk]
    assert sent.status_code == 201
    assert sent.json()["sender"] == alice.pk
    assert sent.json()["sender_device"] is None


def test_session_writes_need_the_csrf_token(make_user, make_group):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(
        f"/api/v1/conversations/{conversation.pk}/messages", {"client_msg_id": "s1", "body": "hi"}, format="json"
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["message"]


def test_logging_a_session_out_revokes_its_websocket_device(make_user):
    from django.test import Client

    from devices.models import Device
    from devices.services import SESSION_DEVICE_KEY, device_for_session

    user = make_user(username="sessionuser")
    client = Client()
    assert client.login(username="sessionuser", password="correct horse battery staple")
    session = client.session
    device = device_for_session(user, session)
    assert client.session[SESSION_DEVICE_KEY] == device.pk
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert Device.objects.get(pk=device.pk).revoked_at is not None
