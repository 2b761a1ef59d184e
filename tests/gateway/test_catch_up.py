"""Catch-up: a device that was away gets exactly what it missed, then live events,
with no gap and no duplicate, even while others keep writing."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations.models import Change, Conversation
from conversations.services import add_member, create_conversation, remove_member, send_message

from .harness import Device

db = database_sync_to_async


def event_at(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


async def send_many(user, conversation_id, count, prefix):
    for i in range(count):
        await db(send_message)(
            sender=user, conversation_id=conversation_id, client_msg_id=f"{prefix}{i}", body=f"{prefix}{i}"
        )


async def last_seq(conversation_id) -> int:
    return (await db(Conversation.objects.get)(pk=conversation_id)).last_seq


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_a_returning_device_gets_exactly_what_it_missed_before_the_sync_reply(server, account):
    (alice, (token,)), (bob, _) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    await send_many(bob, conversation.pk, 5, "before")  # seqs 2..6, seen
    await send_many(bob, conversation.pk, 7, "away")  # seqs 7..13, missed

    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(conversation.pk): 6})
    assert reply["result"] == {"cursors": {str(conversation.pk): 13}, "reset": [], "gone": []}
    # Everything missed came before the reply, in order, once.
    # (The device's own presence may arrive in between: it is not the conversation's.)
    ours = [f for f in device.frames if f.get("conversation_id") == conversation.pk or f["type"] == "ok"]
    assert [f["seq"] for f in ours if f["type"] == "event"] == list(range(7, 14))
    assert ours[-1]["type"] == "ok"
    bodies = [f["payload"]["body"] for f in device.events(conversation.pk)]
    assert bodies == [f"away{i}" for i in range(7)]

    # Then live.
    await send_many(bob, conversation.pk, 1, "live")
    assert (await device.wait_for(event_at(conversation.pk, 14)))["payload"]["body"] == "live0"
    await device.close()


async def test_catch_up_while_others_keep_writing_has_no_gap_and_no_duplicate(server, account):
    (alice, (token,)), (bob, (bob_token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    await send_many(bob, conversation.pk, 30, "old")  # seqs 2..31; the device saw up to 11
    writer = await Device(server.url, bob_token, name="writer").connect()
    assert (await writer.request("sync", cursors={str(conversation.pk): 31}))["type"] == "ok"

    async def keep_writing(count):
        for i in range(count):
            reply = await writer.request("send", conversation_id=conversation.pk, client_msg_id=f"w{i}", body="w")
            assert reply["type"] == "ok", reply

    writing = asyncio.create_task(keep_writing(40))
    device = await Device(server.url, token, name="returning").connect()
    assert (await device.request("sync", cursors={str(conversation.pk): 11}))["type"] == "ok"
    await writing
    final = await last_seq(conversation.pk)
    await device.received(event_at(conversation.pk, final))
    assert device.seqs(conversation.pk) == list(range(12, final + 1))
    await device.close()
    await writer.close()


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_past_the_limit_a_conversation_is_reset_then_followed_live(server, account):
    (alice, (token,)), (bob, _) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    await send_many(bob, conversation.pk, 45, "m")  # the server's limit is 40 changes
    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(conversation.pk): 1})
    reset = next(f for f in device.frames if f["type"] == "reset")
    assert reset == {"type": "reset", "conversation_id": conversation.pk, "last_seq": 46, "reason": "too_many_changes"}
    assert reply["result"]["reset"] == [conversation.pk]
    assert reply["result"]["cursors"] == {str(conversation.pk): 46}
    assert device.events() == []
    await send_many(bob, conversation.pk, 1, "after")
    await device.wait_for(event_at(conversation.pk, 47))
    assert device.seqs(conversation.pk) == [47]
    await device.close()


async def test_a_cursor_ahead_of_the_server_is_reset(server, account):
    ((alice, (token,)),) = [await account()]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(conversation.pk): 99})
    assert next(f for f in device.frames if f["type"] == "reset")["reason"] == "cursor_ahead"
    assert reply["result"]["cursors"] == {str(conversation.pk): 1}
    await device.close()


async def test_conversations_joined_while_offline_come_too(server, account):
    (alice, _), (carol, (token,)) = await account(), await account()
    known, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[carol.pk])
    joined_later, _ = await db(create_conversation)(creator=alice, kind="group", title="later")
    await send_many(alice, joined_later.pk, 3, "history")  # seqs 2..4, before carol joined
    await db(add_member)(actor=alice, conversation_id=joined_later.pk, user_id=carol.pk)  # seq 5
    await send_many(alice, joined_later.pk, 2, "since")  # 6, 7
    new, _ = await db(create_conversation)(creator=alice, kind="direct", member_ids=[carol.pk])
    await send_many(alice, new.pk, 1, "dm")  # 2

    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(known.pk): 1})
    assert reply["result"]["cursors"] == {str(known.pk): 1, str(joined_later.pk): 7, str(new.pk): 2}
    assert device.seqs(joined_later.pk) == [5, 6, 7]  # from the joining on
    added = device.events(joined_later.pk)[0]
    assert added["kind"] == "member.added" and added["payload"]["conversation"]["title"] == "later"
    assert device.seqs(new.pk) == [1, 2]  # from its creation
    assert device.events(new.pk)[0]["kind"] == "conversation.created"
    await device.close()


async def test_a_member_removed_while_offline_gets_the_removal_and_nothing_after(server, account):
    (alice, _), (bob, (token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    await send_many(alice, conversation.pk, 2, "seen")  # 2, 3
    await send_many(alice, conversation.pk, 2, "missed")  # 4, 5
    await db(remove_member)(actor=alice, conversation_id=conversation.pk, user_id=bob.pk)  # 6
    await send_many(alice, conversation.pk, 2, "secret")  # 7, 8

    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(conversation.pk): 3, "999999": 4})
    assert device.seqs(conversation.pk) == [4, 5, 6]
    assert device.events(conversation.pk)[-1]["kind"] == "member.removed"
    assert reply["result"]["cursors"] == {}  # no longer followed
    assert reply["result"]["gone"] == [999999]  # a conversation that never existed looks the same
    assert all("secret" not in str(f) for f in device.frames)

    # Asked again later, the conversation is simply gone.
    again = await device.request("sync", cursors={str(conversation.pk): 6})
    assert again["result"]["gone"] == [conversation.pk]
    await device.close()


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_a_member_removed_live_gets_the_removal_and_nothing_after(server, account):
    (alice, _), (bob, (token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    lobby, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    device = await Device(server.url, token).connect()
    await device.request("sync", cursors={str(conversation.pk): 1, str(lobby.pk): 1})

    await db(remove_member)(actor=alice, conversation_id=conversation.pk, user_id=bob.pk)  # 2
    await send_many(alice, conversation.pk, 3, "after")  # 3..5
    await send_many(alice, lobby.pk, 1, "barrier")  # lobby 2: published after everything above
    await device.received(event_at(lobby.pk, 2))
    assert device.seqs(conversation.pk) == [2]
    fetch = await device.request("fetch", conversation_id=conversation.pk, after_seq=0)
    assert fetch["code"] == "not_found"
    await device.close()


async def test_a_device_that_saw_a_gap_fetches_the_range(server, account):
    ((alice, (token,)),) = [await account()]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    await send_many(alice, conversation.pk, 10, "m")  # 2..11
    device = await Device(server.url, token).connect()
    first = await device.request("fetch", conversation_id=conversation.pk, after_seq=3, limit=4)
    assert [c["seq"] for c in first["result"]["changes"]] == [4, 5, 6, 7]
    assert first["result"]["has_more"] is True
    assert first["result"]["changes"][0]["payload"]["body"] == "m2"
    rest = await device.request("fetch", conversation_id=conversation.pk, after_seq=7)
    assert [c["seq"] for c in rest["result"]["changes"]] == [8, 9, 10, 11]
    assert rest["result"]["has_more"] is False
    kinds = await db(lambda: dict(Change.objects.filter(conversation=conversation).values_list("seq", "kind")))()
    assert all(c["kind"] == kinds[c["seq"]] for c in first["result"]["changes"] + rest["result"]["changes"])
    await device.close()


async def test_a_live_event_the_layer_dropped_still_arrives(server, account, monkeypatch):
    ((alice, (token,)),) = [await account()]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    device = await Device(server.url, token).connect()
    await device.request("sync", cursors={str(conversation.pk): 1})

    import core.publish

    monkeypatch.setattr(core.publish, "send_now", lambda event, groups: None)  # the doorbell fails
    await send_many(alice, conversation.pk, 1, "unannounced")
    # No later event reveals the gap; the server's reconciliation finds it in the log.
    event = await device.wait_for(event_at(conversation.pk, 2), timeout=5)
    assert event["payload"]["body"] == "unannounced0"
    await device.close()


async def test_a_hole_in_the_log_is_answered_with_a_reset_not_a_stall(server, account):
    ((alice, (token,)),) = [await account()]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    await send_many(alice, conversation.pk, 4, "m")  # 2..5
    await db(lambda: Change.objects.filter(conversation=conversation, seq=3).delete())()  # altered by hand
    device = await Device(server.url, token).connect()
    reply = await device.request("sync", cursors={str(conversation.pk): 1})
    # The conversation's frames (the device's own presence may come in between).
    caught_up = [f for f in device.frames[1:-1] if f.get("conversation_id") == conversation.pk]
    assert [(f["type"], f.get("seq") or f.get("last_seq")) for f in caught_up] == [
        ("event", 2),
        ("reset", 3),
        ("event", 4),
        ("event", 5),
    ]
    assert caught_up[1]["reason"] == "log_gap"
    assert reply["result"]["cursors"] == {str(conversation.pk): 5}
    await device.close()


# The test process's own writes reach the server at once only through Redis.
@pytest.mark.redis
async def test_events_published_out_of_order_reach_the_device_in_order(server, account, monkeypatch):
    """Two commits' publishes can reach the layer swapped; the stream puts them back in order."""
    import core.publish
    from conversations.changelog import change_event
    from core.events import conversation_group

    ((alice, (token,)),) = [await account()]
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    device = await Device(server.url, token).connect()
    await device.request("sync", cursors={str(conversation.pk): 1})

    publish = core.publish.send_now
    monkeypatch.setattr(core.publish, "send_now", lambda event, groups: None)
    await send_many(alice, conversation.pk, 2, "m")  # seqs 2 and 3, not yet announced
    changes = await db(lambda: {c.seq: c for c in Change.objects.filter(conversation=conversation, seq__gt=1)})()
    for seq in (3, 2):
        await db(publish)(change_event(changes[seq]), [conversation_group(conversation.pk)])
    await device.wait_for(event_at(conversation.pk, 3))
    assert device.seqs(conversation.pk) == [2, 3]
    await device.close()
