"""Presence: per device, aggregated per user, persisted, visible to contacts live
and over REST, coalesced, and expiring when a server dies without a word."""

import signal
import time

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from conversations.services import create_conversation
from presence.models import UserPresence

from .conftest import SHARED_SERVER_ENV
from .harness import Device, ServerProcess

db = database_sync_to_async


def presence_of(user):
    return lambda f: f["type"] == "event" and f["kind"] == "presence.updated" and f["payload"]["user_id"] == user.pk


def statuses(device, user):
    return [f["payload"]["status"] for f in device.frames if presence_of(user)(f)]


async def next_status(device, user, status):
    frame = await device.wait_for(presence_of(user))
    assert frame["payload"]["status"] == status, frame
    return frame


@db
def rest_presence(token, user_id):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(f"/api/v1/presence/{user_id}")


async def test_presence_aggregates_over_a_users_devices(server, account):
    (alice, (phone_token, laptop_token)), (bob, (bob_token,)), (_, (stranger_token,)) = [
        await account(devices=2),
        await account(),
        await account(),
    ]
    await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    watcher = await Device(server.url, bob_token, name="bob").connect()
    await watcher.request("sync", cursors={})  # presence travels with the conversations followed

    phone = await Device(server.url, phone_token, name="phone").connect()
    await next_status(watcher, alice, "online")
    laptop = await Device(server.url, laptop_token, name="laptop").connect()  # still online: no news
    assert (await phone.request("presence", status="away"))["result"] == {"status": "away"}  # laptop online
    assert (await laptop.request("presence", status="busy"))["type"] == "ok"
    await next_status(watcher, alice, "busy")  # busy > away
    await laptop.close()
    await next_status(watcher, alice, "away")
    stored = await db(UserPresence.objects.get)(user=alice)
    assert (stored.status, stored.last_seen_at) == ("away", None)

    response = await rest_presence(bob_token, alice.pk)
    assert response.status_code == 200
    assert response.json() == {"user_id": alice.pk, "status": "away", "last_seen_at": None}
    hidden = await rest_presence(stranger_token, alice.pk)
    missing = await rest_presence(stranger_token, 10**9)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()

    await phone.close()
    offline = await next_status(watcher, alice, "offline")
    assert offline["payload"]["last_seen_at"] is not None
    assert statuses(watcher, alice) == ["online", "busy", "away", "offline"]
    invalid = await watcher.request("presence", status="invisible")
    assert (invalid["code"], invalid["field"]) == ("invalid", "status")
    await watcher.close()


async def test_a_flapping_connection_is_coalesced(server, account):
    (alice, (token,)), (bob, (bob_token,)) = await account(), await account()
    await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    watcher = await Device(server.url, bob_token).connect()
    await watcher.request("sync", cursors={})
    started = time.monotonic()
    flaps = 8
    for _ in range(flaps):
        device = await Device(server.url, token).connect()
        await device.close()
    final = await Device(server.url, token).connect()
    elapsed = time.monotonic() - started
    await watcher.wait_for(lambda f: presence_of(alice)(f) and f["payload"]["status"] == "online")
    window = float(SHARED_SERVER_ENV["PRESENCE_COALESCE_SECONDS"])
    # 2 * flaps + 1 changes, but at most one broadcast per window (plus the last one).
    assert len(statuses(watcher, alice)) <= elapsed / window + 2 < 2 * flaps + 1
    await final.close()
    await watcher.close()


@pytest.mark.postgres  # two server processes
@pytest.mark.redis
@pytest.mark.timeout(90)
async def test_a_killed_server_does_not_leave_its_devices_online(transactional_db, account):
    timeout, refresh = 2.0, 0.5
    env = {
        "PRESENCE_TIMEOUT": str(timeout),
        "PRESENCE_REFRESH_SECONDS": str(refresh),
        "PRESENCE_COALESCE_SECONDS": "0.1",
    }
    doomed, survivor = ServerProcess(**env).start(), ServerProcess(**env).start()
    try:
        (alice, (token,)), (bob, (bob_token,)) = await account(), await account()
        await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
        watcher = await Device(survivor.url, bob_token).connect()
        await watcher.request("sync", cursors={})
        await Device(doomed.url, token).connect()
        await next_status(watcher, alice, "online")

        doomed.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        offline = await next_status(watcher, alice, "offline")
        took = time.monotonic() - killed_at
        assert took < timeout + 3 * refresh + 1.5, took
        assert offline["payload"]["last_seen_at"] is not None
        stored = await db(UserPresence.objects.get)(user=alice)
        assert stored.status == "offline" and stored.last_seen_at is not None
        await watcher.close()
    finally:
        doomed.stop()
        survivor.stop()


async def test_a_contact_in_several_shared_conversations_hears_each_change_once(server, account):
    (alice, (token,)), (bob, (bob_token,)) = await account(), await account()
    for _ in range(3):
        await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    watcher = await Device(server.url, bob_token).connect()
    await watcher.request("sync", cursors={})
    device = await Device(server.url, token).connect()
    await next_status(watcher, alice, "online")
    await device.request("presence", status="away")
    await next_status(watcher, alice, "away")
    # Copies of "away" (one per shared conversation) would come before the next change.
    await device.request("presence", status="busy")
    await next_status(watcher, alice, "busy")
    assert statuses(watcher, alice) == ["online", "away", "busy"]
    await device.close()
    await watcher.close()
