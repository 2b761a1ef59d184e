"""The chat page's Django side: log-in, the page, log-out, the static files it
loads, and the admin's "View site" link (no browser needed)."""

import json
import re

import pytest
from django.test import Client

from devices.models import Device
from devices.services import SESSION_DEVICE_KEY, device_for_session

PASSWORD = "correct horse battery staple"


pytestmark = pytest.mark.django_db


def body(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def test_the_page_asks_for_a_log_in_first(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_logging_in_leads_to_the_page_with_the_user_and_a_csrf_token(make_user):
    alice = make_user("alice", password=PASSWORD)
    client = Client()
    login_page = client.get("/login/")
    assert login_page.status_code == 200
    assert 'name="username"' in body(login_page) and 'name="password"' in body(login_page)

    response = client.post("/login/", {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.redirect_chain == [("/", 302)]
    html = body(response)
    config = json.loads(re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', html).group(1))
    assert config["user"] == {"id": alice.pk, "username": "alice"}
    assert config["csrfToken"]
    assert re.search(r'<script type="module" src="/static/web/chat.js">', html)


def test_a_wrong_password_stays_on_the_log_in_page(make_user):
    make_user("alice", password=PASSWORD)
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in body(response)


def test_logging_out_ends_the_session_and_revokes_its_device(make_user):
    alice = make_user("alice", password=PASSWORD)
    client = Client()
    client.force_login(alice)
    device = device_for_session(alice, client.session)
    session = client.session
    session[SESSION_DEVICE_KEY] = device.pk
    session.save()

    assert client.get("/logout/").status_code == 405  # POST only
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert Device.objects.get(pk=device.pk).revoked_at is not None
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/static/realtime/client.js", "export class RealtimeClient"),
        ("/static/realtime/client.d.ts", "export declare class RealtimeClient"),
        ("/static/web/chat.js", 'from "../realtime/client.js"'),
        ("/static/web/chat.css", ".conversation-list"),
    ],
)
def test_the_page_files_are_served(client, path, text):
    response = client.get(path)
    assert response.status_code == 200
    assert text in body(response)
    if path.endswith(".js"):
        assert "javascript" in response["Content-Type"]


def test_the_admins_view_site_link_leads_to_the_page(admin_client):
    html = body(admin_client.get("/admin/"))
    assert re.search(r'<a href="/">View site</a>', html)
