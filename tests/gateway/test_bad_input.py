"""Input a careless or hostile client sends: each gets the documented error with
its field and ref, nothing is stored, nothing logs a traceback, and the
connection goes on serving."""

import json

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from conversations.services import create_conversation

from .harness import Device

db = database_sync_to_async


@pytest.fixture
async def room(server, account):
    (alice, (token,)), (bob, _) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    device = await Device(server.url, token).connect()
    yield conversation, device
    await device.close()


@pytest.mark.parametrize(
    "field, value",
    [
        ("body", "a\u0000b"),
        ("body", "a\ud800b"),
        ("client_msg_id", "id\u0000"),
        ("client_msg_id", "\udfffid"),
    ],
)
async def test_nul_and_lone_surrogates_are_invalid_with_their_field(server, room, field, value):
    conversation, device = room
    frame = {"conversation_id": conversation.pk, "client_msg_id": "m1", "body": "hello", field: value}
    reply = await device.request("send", **frame)
    assert (reply["type"], reply["code"], reply["field"]) == ("error", "invalid", field)
    assert (await device.request("ping"))["type"] == "pong"
    assert not await db(Message.objects.filter(conversation=conversation).exists)()
    assert "Traceback" not in server.output()


async def test_a_frame_nested_too_deeply_is_invalid_json(server, room):
    _, device = room
    await device.send_raw('{"type":"ping","ref":"deep","x":' + "[" * 5000 + "]" * 5000 + "}")
    reply = await device.wait_for(lambda f: f["type"] == "error")
    assert reply["code"] == "invalid_json" and reply["ref"] is None
    assert (await device.request("ping"))["type"] == "pong"
    assert "Traceback" not in server.output()


async def test_huge_integers_are_ignored_where_unknown_and_invalid_where_they_matter(server, room):
    conversation, device = room
    huge = "9" * 5000
    await device.send_raw('{"type":"ping","ref":"p1","unknown":' + huge + "}")
    assert (await device.wait_for(lambda f: f.get("ref") == "p1"))["type"] == "pong"
    frame = '{"type":"send","ref":"s1","conversation_id":' + huge + ',"client_msg_id":"m","body":"hi"}'
    await device.send_raw(frame)
    reply = await device.wait_for(lambda f: f.get("ref") == "s1")
    assert (reply["code"], reply["field"]) == ("invalid", "conversation_id")
    frame = json.dumps({"type": "edit", "ref": "e1", "conversation_id": conversation.pk, "message_id": 1, "body": "x"})
    await device.send_raw(frame.replace("}", ', "version": ' + huge + "}"))
    reply = await device.wait_for(lambda f: f.get("ref") == "e1")
    assert (reply["code"], reply["field"]) == ("invalid", "version")
    await device.send_raw('{"type":"ping","ref":' + huge + "}")
    reply = await device.wait_for(lambda f: f["type"] == "error")
    assert (reply["code"], reply["field"], reply["ref"]) == ("invalid_frame", "ref", None)
    assert "Traceback" not in server.output()


async def test_a_ref_that_cannot_be_sent_back_is_refused(server, room):
    _, device = room
    await device.send_raw('{"type":"ping","ref":"\\ud800"}')
    reply = await device.wait_for(lambda f: f["type"] == "error")
    assert (reply["code"], reply["field"], reply["ref"]) == ("invalid_frame", "ref", None)
    assert (await device.request("ping"))["type"] == "pong"
    assert "Traceback" not in server.output()
