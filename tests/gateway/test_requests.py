"""Requests over the WebSocket: the same services and rules as REST, and clear
errors that leave the connection and the stored data as they were."""

import json

from channels.db import database_sync_to_async

from conversations.models import Change, Message
from conversations.services import create_conversation

from .harness import Device

db = database_sync_to_async


async def setup_pair(server, account):
    (alice, alice_tokens), (bob, bob_tokens) = await account(devices=2), await account(devices=1)
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cursors = {str(conversation.pk): 1}
    devices = []
    for i, token in enumerate(alice_tokens + bob_tokens):
        device = await Device(server.url, token, name=f"d{i}").connect()
        assert (await device.request("sync", cursors=cursors))["type"] == "ok"
        devices.append(device)
    return conversation.pk, alice, bob, devices


async def next_error(device):
    """The next error frame (presence events of the setup may still arrive in between)."""
    return await device.wait_for(lambda f: f["type"] == "error")


def is_event(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


async def test_send_is_acknowledged_after_commit_and_reaches_the_senders_other_device(server, account):
    cid, alice, _, (phone, laptop, bob) = await setup_pair(server, account)
    reply = await phone.request("send", conversation_id=cid, client_msg_id="m-1", body="hello")
    assert reply["type"] == "ok" and reply["ref"].startswith("d0-")
    result = reply["result"]
    stored = await db(Message.objects.get)(pk=result["message_id"])  # committed before the reply
    assert (stored.seq, stored.body, stored.sender_id) == (result["seq"], "hello", alice.pk)
    assert result == {
        "conversation_id": cid,
        "message_id": stored.pk,
        "seq": 2,
        "client_msg_id": "m-1",
        "duplicate": False,
    }
    for device in (phone, laptop, bob):
        event = await device.received(is_event(cid, 2))
        assert event["kind"] == "message.created"
        assert event["payload"]["client_msg_id"] == "m-1"
        assert event["payload"]["sender_device"] == phone.hello["device"]["id"]

    # A retry (the reply was lost) returns the original and publishes nothing new.
    retry = await phone.request("send", conversation_id=cid, client_msg_id="m-1", body="hello")
    assert retry["result"] == {**result, "duplicate": True}
    next_send = await laptop.request("send", conversation_id=cid, client_msg_id="m-2", body="next")
    await bob.wait_for(is_event(cid, next_send["result"]["seq"]))
    assert bob.seqs(cid) == [2, 3]
    assert await db(Message.objects.filter(conversation_id=cid).count)() == 2
    for device in (phone, laptop, bob):
        await device.close()


async def test_edit_conflict_and_delete_follow_the_services_rules(server, account):
    cid, _, _, (phone, laptop, bob) = await setup_pair(server, account)
    sent = (await phone.request("send", conversation_id=cid, client_msg_id="m", body="v1"))["result"]
    edited = await laptop.request("edit", conversation_id=cid, message_id=sent["message_id"], body="v2", version=1)
    assert edited["result"]["message"]["version"] == 2

    stale = await phone.request("edit", conversation_id=cid, message_id=sent["message_id"], body="v2'", version=1)
    assert stale["type"] == "error" and stale["ref"].startswith("d0-")
    assert stale["code"] == "version_conflict"
    assert stale["details"] == {"current_version": 2, "current_body": "v2"}

    deleted = await bob.request("delete", conversation_id=cid, message_id=sent["message_id"])
    assert deleted["type"] == "error" and deleted["code"] == "forbidden"  # not his message, not a manager
    deleted = await phone.request("delete", conversation_id=cid, message_id=sent["message_id"])
    assert deleted["result"]["message"]["deleted"] is True
    tombstone = await bob.received(lambda f: f["type"] == "event" and f["kind"] == "message.deleted")
    assert tombstone["payload"]["body"] == "" and tombstone["payload"]["id"] == sent["message_id"]

    late_edit = await laptop.request("edit", conversation_id=cid, message_id=sent["message_id"], body="v3", version=3)
    assert late_edit["code"] == "message_deleted"
    kinds = await db(lambda: list(Change.objects.filter(conversation_id=cid).values_list("kind", flat=True)))()
    assert kinds == ["conversation.created", "message.created", "message.edited", "message.deleted"]
    for device in (phone, laptop, bob):
        await device.close()


async def test_read_moves_forward_and_reaches_other_devices_and_members(server, account):
    cid, alice, bob_user, (phone, laptop, bob) = await setup_pair(server, account)
    for i in range(3):
        await bob.request("send", conversation_id=cid, client_msg_id=f"b{i}", body="hi")
    read = await phone.request("read", conversation_id=cid, seq=3)
    assert read["result"] == {"conversation_id": cid, "delivered_seq": 3, "read_seq": 3}
    older = await laptop.request("read", conversation_id=cid, seq=2)
    assert older["result"]["read_seq"] == 3  # never moves back

    for device in (laptop, bob):  # the reader's other device, and the other member
        receipt = await device.received(lambda f: f["type"] == "event" and f["kind"] == "receipts.updated")
        assert "seq" not in receipt and receipt["conversation_id"] == cid
        assert receipt["payload"] == {"receipts": [{"user_id": alice.pk, "delivered_seq": 3, "read_seq": 3}]}
    for device in (phone, laptop, bob):
        await device.close()


async def test_bad_frames_get_error_frames_and_the_connection_stays(server, account):
    cid, _, _, (phone, laptop, bob) = await setup_pair(server, account)
    stranger_conversation, _ = await db(create_conversation)(creator=(await account())[0], kind="group")

    await phone.send_raw("{not json")
    assert (await next_error(phone)) == {
        "type": "error",
        "ref": None,
        "code": "invalid_json",
        "message": "The frame is not valid JSON.",
    }
    await phone.send_raw(json.dumps(["a", "list"]))
    assert (await next_error(phone))["code"] == "invalid_frame"
    await phone.send_raw(json.dumps({"ref": "no-type"}))
    no_type = await next_error(phone)
    assert (no_type["code"], no_type["ref"], no_type["field"]) == ("invalid_frame", "no-type", "type")
    await phone.send_raw(json.dumps({"type": "ping", "ref": {"an": "object"}}))
    assert (await next_error(phone))["field"] == "ref"
    await phone.send_raw(b"\x00binary")
    assert (await next_error(phone))["code"] == "invalid_frame"
    oversized = json.dumps({"type": "send", "ref": "big", "body": "x" * 70000})
    await phone.send_raw(oversized)
    too_large = await next_error(phone)
    assert (too_large["code"], too_large["ref"]) == ("frame_too_large", "big")

    unknown = await phone.request("subscribe_everything")
    assert unknown["code"] == "unknown_type" and unknown["field"] == "type"
    long_body = await phone.request("send", conversation_id=cid, client_msg_id="x", body="y" * 4001)
    assert (long_body["code"], long_body["field"]) == ("invalid", "body")
    bad_id = await phone.request("send", conversation_id="1", client_msg_id="x", body="y")
    assert (bad_id["code"], bad_id["field"]) == ("invalid", "conversation_id")

    # A conversation you are not in looks exactly like one that does not exist.
    not_member = await phone.request("send", conversation_id=stranger_conversation.pk, client_msg_id="x", body="y")
    missing = await phone.request("send", conversation_id=10**9, client_msg_id="x", body="y")
    assert not_member["code"] == missing["code"] == "not_found"
    assert {k: v for k, v in not_member.items() if k != "ref"} == {k: v for k, v in missing.items() if k != "ref"}
    not_member_fetch = await phone.request("fetch", conversation_id=stranger_conversation.pk, after_seq=0)
    assert not_member_fetch["code"] == "not_found"

    # The connection is still up and nothing was stored.
    assert (await phone.request("ping"))["type"] == "pong"
    assert await db(Message.objects.count)() == 0
    assert await db(Change.objects.filter(conversation_id=cid).count)() == 1
    for device in (phone, laptop, bob):
        await device.close()
