"""Who may connect: token header, token query parameter, session; Origin; revocation."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from devices.models import Device
from devices.services import revoke_device
from gateway import close_codes

from .harness import Device as Ws


async def refused_with(url, **options) -> int:
    """The close code of a refused connection. (Daphne sends no close reason.)"""
    ws = Ws(url, **options)
    await ws.connect(expect_hello=False)
    code = await ws.wait_closed()
    assert ws.frames == []  # refused before hello: nothing was sent
    return code


async def test_bearer_header_gets_hello_with_identity_and_limits(server, account):
    user, (token,) = await account(username="hana")
    ws = await Ws(server.url, token).connect()
    hello = ws.hello
    assert hello["user"] == {"id": user.pk, "username": "hana"}
    assert hello["device"]["name"] == "device0"
    assert hello["protocol"] == 1
    assert hello["heartbeat_interval"] > 0 and hello["heartbeat_timeout"] > hello["heartbeat_interval"]
    assert hello["limits"]["sync_max_changes"] == 40  # the server's SYNC_MAX_CHANGES
    assert hello["limits"]["message_body_max_chars"] == 4000
    assert "server_time" in hello
    await ws.close()


async def test_query_parameter_token_for_browsers(server, account):
    user, (token,) = await account()
    ws = await Ws(server.url, headers={"Origin": "http://localhost:8000"}, query=f"token={token}").connect()
    assert ws.hello["user"]["id"] == user.pk
    await ws.close()


async def test_session_cookie_gets_a_device_of_its_own(server, account):
    user, _ = await account(username="sam")

    @database_sync_to_async
    def session_cookie():
        client = Client()
        assert client.login(username="sam", password="correct horse battery staple")
        return client.cookies["sessionid"].value

    cookie = await session_cookie()
    headers = {"Cookie": f"sessionid={cookie}", "Origin": "http://localhost"}
    first = await Ws(server.url, headers=headers).connect()
    second = await Ws(server.url, headers=headers).connect()
    assert first.hello["user"]["id"] == user.pk
    # The same session is the same device on every connection.
    assert first.hello["device"]["id"] == second.hello["device"]["id"]
    device = await database_sync_to_async(Device.objects.get)(pk=first.hello["device"]["id"])
    assert device.user_id == user.pk
    await first.close()
    await second.close()


async def test_a_session_from_before_a_password_change_is_refused_with_4401(server, account):
    user, _ = await account(username="pat")

    @database_sync_to_async
    def session_cookie_then_new_password():
        client = Client()
        assert client.login(username="pat", password="correct horse battery staple")
        user.set_password("another horse battery staple")
        user.save()
        return client.cookies["sessionid"].value

    cookie = await session_cookie_then_new_password()
    headers = {"Cookie": f"sessionid={cookie}", "Origin": "http://localhost"}
    assert await refused_with(server.url, headers=headers) == close_codes.UNAUTHORIZED


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="no credentials"),
        pytest.param({"token": "not-a-real-token"}, id="unknown token in header"),
        pytest.param({"query": "token=not-a-real-token"}, id="unknown token in query"),
        pytest.param({"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, id="not a bearer header"),
    ],
)
async def test_missing_or_wrong_credentials_are_refused_with_4401(server, options):
    assert await refused_with(server.url, **options) == close_codes.UNAUTHORIZED


async def test_a_revoked_token_is_refused(server, account):
    user, (token,) = await account()
    device = await database_sync_to_async(Device.objects.get)(user=user)
    await database_sync_to_async(revoke_device)(device=device)
    assert await refused_with(server.url, token=token) == close_codes.UNAUTHORIZED


async def test_a_foreign_origin_is_refused_with_4403(server, account):
    _, (token,) = await account()
    code = await refused_with(server.url, token=token, headers={"Origin": "https://evil.example"})
    assert code == close_codes.FORBIDDEN_ORIGIN


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_revoking_a_connected_device_disconnects_it_at_once(server, account):
    user, (token, other_token) = await account(devices=2)
    ws = await Ws(server.url, token).connect()
    other = await Ws(server.url, other_token).connect()
    device = await database_sync_to_async(Device.objects.get)(pk=ws.hello["device"]["id"])
    await database_sync_to_async(revoke_device)(device=device)
    assert await ws.wait_closed() == close_codes.DEVICE_REVOKED
    # The user's other device is untouched.
    assert (await other.request("ping"))["type"] == "pong"
    await other.close()


async def test_a_revocation_whose_event_was_lost_still_disconnects(server, account, monkeypatch):
    import core.publish

    user, (token,) = await account()
    ws = await Ws(server.url, token).connect()
    monkeypatch.setattr(core.publish, "send_now", lambda event, groups: None)  # the doorbell fails
    device = await database_sync_to_async(Device.objects.get)(pk=ws.hello["device"]["id"])
    await database_sync_to_async(revoke_device)(device=device)
    # The server's periodic reconciliation finds the revocation in the database.
    assert await ws.wait_closed(timeout=5) == close_codes.DEVICE_REVOKED
