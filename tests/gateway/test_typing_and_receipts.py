"""Typing indicators (never stored, expiring) and delivery/read receipts."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from conversations.models import Change
from conversations.services import create_conversation, send_message
from delivery.services import mark_delivered

from .harness import Device

db = database_sync_to_async


def typing_of(user, state=None):
    return lambda f: (
        f["type"] == "event"
        and f["kind"] == "typing"
        and f["payload"]["user_id"] == user.pk
        and (state is None or f["payload"]["state"] == state)
    )


async def synced(server, token, conversation, name=""):
    device = await Device(server.url, token, name=name).connect()
    assert (await device.request("sync", cursors={str(conversation.pk): conversation.last_seq}))["type"] == "ok"
    return device


async def test_typing_reaches_others_and_expires_by_itself(server, account):
    (alice, (phone_token, laptop_token)), (bob, (bob_token,)) = await account(devices=2), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    phone, laptop = await synced(server, phone_token, conversation), await synced(server, laptop_token, conversation)
    bob_device = await synced(server, bob_token, conversation)

    assert (await phone.request("typing", conversation_id=conversation.pk, state="start"))["type"] == "ok"
    start = await bob_device.wait_for(typing_of(alice, "start"))
    assert start["conversation_id"] == conversation.pk and "seq" not in start
    assert start["payload"]["device_id"] == phone.hello["device"]["id"]
    assert start["payload"]["expires_in"] == 1.0  # the server's TYPING_TIMEOUT
    # No refresh: the server ends it on its own.
    stop = await bob_device.wait_for(typing_of(alice, "stop"), timeout=5)
    assert stop["payload"]["state"] == "stop"

    # Never stored, and never echoed to the typist's own devices.
    assert await db(Change.objects.filter(conversation=conversation).count)() == 1
    barrier = await bob_device.request("send", conversation_id=conversation.pk, client_msg_id="b", body="x")
    await laptop.received(lambda f: f["type"] == "event" and f.get("seq") == barrier["result"]["seq"])
    assert not [f for f in laptop.frames if typing_of(alice)(f)]
    for device in (phone, laptop, bob_device):
        await device.close()


async def test_typing_ends_on_send_and_on_disconnect(server, account):
    (alice, (token,)), (bob, (bob_token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    typist, watcher = await synced(server, token, conversation), await synced(server, bob_token, conversation)

    await typist.request("typing", conversation_id=conversation.pk, state="start")
    await watcher.wait_for(typing_of(alice, "start"))
    await typist.request("send", conversation_id=conversation.pk, client_msg_id="m", body="done typing")
    await watcher.received(typing_of(alice, "stop"), timeout=0.9)  # well before the 1 s expiry

    await typist.request("typing", conversation_id=conversation.pk, state="start")
    await watcher.wait_for(typing_of(alice, "start"))
    await typist.close()
    await watcher.wait_for(typing_of(alice, "stop"), timeout=0.9)

    elsewhere, _ = await db(create_conversation)(creator=bob, kind="group")
    again = await Device(server.url, token).connect()
    refused = await again.request("typing", conversation_id=elsewhere.pk, state="start")
    assert refused["code"] == "not_found"
    bad_state = await again.request("typing", conversation_id=conversation.pk, state="maybe")
    assert bad_state["code"] in ("not_found", "invalid")  # not followed before sync
    await again.close()
    await watcher.close()


@db
def rest_unread(token, conversation_id):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = client.get(f"/api/v1/conversations/{conversation_id}").json()
    return body["unread_count"]


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_reading_on_one_device_clears_the_unread_count_on_the_other(server, account):
    (alice, (phone_token, laptop_token)), (bob, _) = await account(devices=2), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    phone, laptop = await synced(server, phone_token, conversation), await synced(server, laptop_token, conversation)
    for i in range(3):
        await db(send_message)(sender=bob, conversation_id=conversation.pk, client_msg_id=f"b{i}", body="hi")
    await laptop.received(lambda f: f["type"] == "event" and f.get("seq") == 4)
    assert await rest_unread(laptop_token, conversation.pk) == 3

    await phone.request("read", conversation_id=conversation.pk, seq=4)
    receipt = await laptop.wait_for(lambda f: f["type"] == "event" and f["kind"] == "receipts.updated")
    assert {"user_id": alice.pk, "delivered_seq": 4, "read_seq": 4} in receipt["payload"]["receipts"]
    # The laptop learns its read cursor moved; its unread count (events after read_seq) is 0.
    assert [e for e in laptop.events(conversation.pk) if e.get("seq", 0) > 4] == []
    assert await rest_unread(laptop_token, conversation.pk) == 0
    await phone.close()
    await laptop.close()


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_receipts_of_a_message_in_a_100_member_conversation(server, account, make_user):
    alice, (alice_token,) = await account(username="sender")
    members = await db(lambda: [make_user() for _ in range(99)])()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[m.pk for m in members])
    sender = await synced(server, alice_token, conversation, "sender")
    sent = (await sender.request("send", conversation_id=conversation.pk, client_msg_id="big", body="hello all"))[
        "result"
    ]

    # 30 members acknowledge over their own devices' sockets, 12 of them read too;
    # 10 more acknowledge through the service, as REST does.
    from devices.services import issue_device

    tokens = await db(lambda: [issue_device(user=m, name="phone").token for m in members[:30]])()
    sockets = await asyncio.gather(*(synced(server, t, conversation, f"m{i}") for i, t in enumerate(tokens)))
    for i, device in enumerate(sockets):
        await device.received(lambda f: f["type"] == "event" and f.get("seq") == sent["seq"])
        kind = "read" if i < 12 else "delivered"
        assert (await device.request(kind, conversation_id=conversation.pk, seq=sent["seq"]))["type"] == "ok"
    for member in members[30:40]:
        await db(mark_delivered)(user=member, conversation_id=conversation.pk, seq=sent["seq"])

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_token}")
    url = f"/api/v1/conversations/{conversation.pk}/messages/{sent['message_id']}/receipts"
    receipts = (await db(client.get)(url)).json()
    assert (receipts["recipients"], receipts["delivered_count"], receipts["read_count"]) == (99, 40, 12)
    assert {u["id"] for u in receipts["read_by"]} == {m.pk for m in members[:12]}
    assert {u["id"] for u in receipts["delivered_to"]} == {m.pk for m in members[:40]}

    # The sender's device learns the same live, in fewer broadcasts than cursor moves.
    live: dict[int, dict] = {}

    def absorb(frame):
        if frame["type"] == "event" and frame["kind"] == "receipts.updated":
            for entry in frame["payload"]["receipts"]:  # cursors only grow: keep the highest
                known = live.get(entry["user_id"], {"delivered_seq": 0, "read_seq": 0})
                live[entry["user_id"]] = {k: max(known[k], entry[k]) for k in ("delivered_seq", "read_seq")}
        delivered = {u for u, e in live.items() if e["delivered_seq"] >= sent["seq"]}
        return len(delivered) == 40

    if not any(absorb(f) for f in list(sender.frames)):
        await sender.wait_for(absorb)
    assert {u for u, e in live.items() if e["read_seq"] >= sent["seq"]} == {m.pk for m in members[:12]}
    broadcasts = [f for f in sender.frames if f["type"] == "event" and f["kind"] == "receipts.updated"]
    assert len(broadcasts) < 30 + 10
    for device in [sender, *sockets]:
        await device.close()
