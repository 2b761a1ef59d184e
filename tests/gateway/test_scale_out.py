"""Several server processes behave as one: devices on different processes see
each other's messages, edits, deletes, typing, presence and receipts."""

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation
from conversations.services import add_member, create_conversation, rename_conversation

from .harness import Device, ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis]  # two server processes

db = database_sync_to_async


def kind_is(kind, **payload):
    def match(frame):
        if frame["type"] != "event" or frame["kind"] != kind:
            return False
        return all(frame["payload"].get(k) == v for k, v in payload.items())

    return match


@pytest.fixture
def two_servers(transactional_db):
    env = {"TYPING_TIMEOUT": "5", "PRESENCE_COALESCE_SECONDS": "0.1", "RECEIPT_COALESCE_SECONDS": "0.1"}
    servers = [ServerProcess(**env).start(), ServerProcess(**env).start()]
    yield servers
    for server in servers:
        server.stop()


async def test_every_kind_of_event_crosses_processes(two_servers, account):
    one, two = two_servers
    (alice, (alice_token,)), (bob, (bob_phone, bob_laptop)), (carol, _) = [
        await account(),
        await account(devices=2),
        await account(),
    ]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cursors = {str(conversation.pk): 1}
    a = await Device(one.url, alice_token, name="a").connect()
    b = await Device(two.url, bob_phone, name="b").connect()
    b_laptop = await Device(one.url, bob_laptop, name="bl").connect()  # same user, other process
    for device in (a, b, b_laptop):
        assert (await device.request("sync", cursors=cursors))["type"] == "ok"

    # Messages, edits and deletes, in both directions.
    sent = (await a.request("send", conversation_id=conversation.pk, client_msg_id="a1", body="from one"))["result"]
    await b.received(kind_is("message.created", body="from one"))
    reply = (await b.request("send", conversation_id=conversation.pk, client_msg_id="b1", body="from two"))["result"]
    await a.received(kind_is("message.created", body="from two"))
    await b_laptop.received(kind_is("message.created", body="from two"))  # the sender's other device
    await b.request("edit", conversation_id=conversation.pk, message_id=reply["message_id"], body="edited", version=1)
    await a.received(kind_is("message.edited", body="edited"))
    await a.request("delete", conversation_id=conversation.pk, message_id=sent["message_id"])
    await b.received(kind_is("message.deleted", id=sent["message_id"]))

    # Membership and renames made by the services (from a third process: this one).
    await db(add_member)(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    await db(rename_conversation)(actor=alice, conversation_id=conversation.pk, title="across")
    await b.received(kind_is("member.added"))
    await b.received(kind_is("conversation.renamed", title="across"))

    # Typing, presence and receipts.
    await a.request("typing", conversation_id=conversation.pk, state="start")
    await b.received(kind_is("typing", user_id=alice.pk, state="start"))
    await a.request("presence", status="busy")
    await b.received(kind_is("presence.updated", user_id=alice.pk, status="busy"))
    last = (await db(Conversation.objects.get)(pk=conversation.pk)).last_seq
    await b.request("read", conversation_id=conversation.pk, seq=last)
    receipt = await a.received(kind_is("receipts.updated"))
    assert {"user_id": bob.pk, "delivered_seq": last, "read_seq": last} in receipt["payload"]["receipts"]

    # Each device got every change of the conversation exactly once, in order.
    for device in (a, b, b_laptop):
        await device.received(lambda f: f["type"] == "event" and f.get("seq") == last)
        assert device.seqs(conversation.pk) == list(range(2, last + 1)), device.name
    for device in (a, b, b_laptop):
        await device.close()
