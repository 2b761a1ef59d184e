import pytest
from channels.db import database_sync_to_async

from conversations.services import create_conversation

from .harness import Device


async def test_send_over_websocket_reaches_the_other_member(server, make_user, make_device):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    _, alice_token = await database_sync_to_async(make_device)(alice)
    _, bob_token = await database_sync_to_async(make_device)(bob)
    conversation, _ = await database_sync_to_async(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    a = await Device(server.url, alice_token, name="a").connect()
    b = await Device(server.url, bob_token, name="b").connect()
    assert (await a.request("sync", cursors={str(conversation.pk): 1}))["type"] == "ok"
    assert (await b.request("sync", cursors={str(conversation.pk): 1}))["type"] == "ok"
    reply = await a.request("send", conversation_id=conversation.pk, client_msg_id="x1", body="hi")
    assert reply["type"] == "ok", reply
    event = await b.wait_for(lambda f: f["type"] == "event")
    assert event["seq"] == 2 and event["payload"]["body"] == "hi"
    await a.close(); await b.close()
