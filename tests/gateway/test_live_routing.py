"""Every change reaches every device of every member, and no other device.

Three users with two devices each, in overlapping conversations. Changes are
made over the WebSocket, over REST, through the services and in the admin.
Each device must end up with exactly the (conversation, seq) events of the
conversations its user was in at the time, in order, and nothing else.
"""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from conversations.models import Change, Conversation, Message
from conversations.services import add_member, create_conversation, remove_member, rename_conversation, send_message

from ..admin.helpers import change_form_data
from .harness import Device

# Changes made by the test process (REST, admin, services) reach the server at once only through Redis.
pytestmark = pytest.mark.redis

db = database_sync_to_async


def barrier_reached(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


async def connect_and_sync(server, tokens, name):
    devices = []
    for i, token in enumerate(tokens):
        device = await Device(server.url, token, name=f"{name}{i}").connect()
        conversations = await db(lambda: {str(c.pk): c.last_seq for c in Conversation.objects.all()})()
        reply = await device.request("sync", cursors=conversations)
        assert reply["type"] == "ok", reply
        devices.append(device)
    return devices


async def test_three_users_two_devices_each(server, account):
    (alice, alice_tokens), (bob, bob_tokens), (carol, carol_tokens) = [
        await account(devices=2, username=name) for name in ("alice", "bob", "carol")
    ]

    @db
    def setup():
        ab, _ = create_conversation(creator=alice, kind="group", title="ab", member_ids=[bob.pk])
        bc, _ = create_conversation(creator=bob, kind="group", title="bc", member_ids=[carol.pk])
        ac, _ = create_conversation(creator=alice, kind="direct", member_ids=[carol.pk])
        everyone, _ = create_conversation(creator=alice, kind="group", title="all", member_ids=[bob.pk, carol.pk])
        return ab.pk, bc.pk, ac.pk, everyone.pk

    ab, bc, ac, everyone = await setup()
    a = await connect_and_sync(server, alice_tokens, "a")
    b = await connect_and_sync(server, bob_tokens, "b")
    c = await connect_and_sync(server, carol_tokens, "c")

    # Over the WebSocket: the sender's reply names the message and its seq.
    sent = await a[0].request("send", conversation_id=ab, client_msg_id="ws-1", body="hi bob")
    assert sent["type"] == "ok", sent
    assert sent["result"]["seq"] == 2 and sent["result"]["duplicate"] is False
    first_id = sent["result"]["message_id"]
    assert (await c[1].request("send", conversation_id=ac, client_msg_id="ws-2", body="hi alice"))["type"] == "ok"
    edited = await a[1].request("edit", conversation_id=ab, message_id=first_id, body="hi bob!", version=1)
    assert edited["result"]["message"]["version"] == 2

    # Over REST.
    @db
    def rest_send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bob_tokens[0]}")
        response = client.post(
            f"/api/v1/conversations/{bc}/messages", {"client_msg_id": "rest-1", "body": "hi carol"}, format="json"
        )
        assert response.status_code == 201, response.content
        return response.json()["id"]

    rest_message = await rest_send()

    # In the admin: a moderator's edit goes through the same service.
    @db
    def admin_edit():
        get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        client = Client()
        client.force_login(get_user_model().objects.get(username="root"))
        url = reverse("admin:conversations_message_change", args=[rest_message])
        form = client.get(url)
        response = client.post(url, change_form_data(form, body="hi carol (edited by staff)"))
        assert response.status_code == 302

    await admin_edit()

    # Through the services: membership and renames.
    await db(rename_conversation)(actor=bob, conversation_id=bc, title="bc renamed")
    await db(add_member)(actor=alice, conversation_id=ab, user_id=carol.pk)
    after_join = await a[0].request("send", conversation_id=ab, client_msg_id="ws-3", body="welcome carol")
    await db(remove_member)(actor=alice, conversation_id=ab, user_id=bob.pk)
    await db(send_message)(sender=alice, conversation_id=ab, client_msg_id="svc-1", body="bob is gone")
    ca, _ = await db(create_conversation)(creator=carol, kind="group", title="ca", member_ids=[alice.pk])
    await db(send_message)(sender=carol, conversation_id=ca.pk, client_msg_id="svc-2", body="new room")

    # The barrier: once a device has it, it has had every earlier event (one hub, in order).
    barrier = await a[0].request("send", conversation_id=everyone, client_msg_id="barrier", body="done")
    for device in a + b + c:
        await device.received(barrier_reached(everyone, barrier["result"]["seq"]))

    @db
    def expected_by_user():
        log = {}
        for change in Change.objects.order_by("conversation_id", "seq"):
            log.setdefault(change.conversation_id, []).append(change.seq)
        return log

    log = await expected_by_user()
    joined_ab = after_join["result"]["seq"] - 1  # carol's member.added
    bob_removed = joined_ab + 2  # after "welcome carol"
    expected = {
        "alice": {ab: log[ab][1:], ac: log[ac][1:], everyone: log[everyone][1:], ca.pk: log[ca.pk]},
        "bob": {ab: [s for s in log[ab][1:] if s <= bob_removed], bc: log[bc][1:], everyone: log[everyone][1:]},
        "carol": {
            ab: [s for s in log[ab] if s >= joined_ab],
            bc: log[bc][1:],
            ac: log[ac][1:],
            everyone: log[everyone][1:],
            ca.pk: log[ca.pk],
        },
    }
    for name, devices in (("alice", a), ("bob", b), ("carol", c)):
        for device in devices:
            logged = [e for e in device.events() if "seq" in e]  # presence and receipts are not log events
            received = {cid: device.seqs(cid) for cid in {e["conversation_id"] for e in logged}}
            assert received == expected[name], f"{device.name}: {received} != {expected[name]}"

    # Events carry what a device needs to match its own sends.
    created = next(e for e in a[1].events(ab) if e["kind"] == "message.created")
    assert created["payload"]["client_msg_id"] == "ws-1"
    assert created["payload"]["id"] == first_id
    staff_edit = next(e for e in c[0].events(bc) if e["kind"] == "message.edited")
    assert staff_edit["payload"]["body"] == "hi carol (edited by staff)"
    removal = b[0].events(ab)[-1]
    assert (removal["kind"], removal["payload"]["user"]["id"]) == ("member.removed", bob.pk)
    carol_join = c[0].events(ab)[0]
    assert carol_join["kind"] == "member.added"
    assert {m["user"]["id"] for m in carol_join["payload"]["conversation"]["members"]} == {alice.pk, bob.pk, carol.pk}
    assert await db(Message.objects.filter(conversation_id=ab).count)() == 3

    for device in a + b + c:
        await device.close()
