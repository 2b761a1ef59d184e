"""DeviceConnection: what a device receives of the events the hub hands it,
with a fake consumer, a fake hub and a fake log (no database, no layer)."""

import asyncio
import json
from types import SimpleNamespace

import pytest

from conversations.models import Change
from core.events import conversation_group, device_group, user_group
from gateway import close_codes
from gateway import stream as stream_module
from gateway.connection import DeviceConnection
from gateway.stream import REFILL_BATCH

from .fakes import (
    WAIT_SECONDS,
    FakeConsumer,
    FakeHub,
    FakeLog,
    change,
    change_message,
    event_frame,
    plain_message,
    removal,
)

USER = 1
OTHER_USER = 2


@pytest.fixture
def log(monkeypatch):
    log = FakeLog()
    monkeypatch.setattr(stream_module, "load_changes", log.load)
    return log


@pytest.fixture
def consumer():
    return FakeConsumer()


@pytest.fixture
def hub():
    return FakeHub()


@pytest.fixture
def connection(consumer, hub, log):
    return DeviceConnection(consumer, hub, SimpleNamespace(pk=7, user_id=USER))


def sent(consumer):
    return [json.loads(text) for text in consumer.sent.items]


def created(conversation_id, seq=1):
    return change(conversation_id, seq, Change.Kind.CONVERSATION_CREATED, id=conversation_id, members=[])


def added(conversation_id, seq, user_id=USER):
    return change(conversation_id, seq, Change.Kind.MEMBER_ADDED, user={"id": user_id, "username": f"u{user_id}"})


def presence(event_id, group=None, user_id=OTHER_USER):
    meta = {"event_id": event_id} if event_id is not None else {}
    return plain_message(
        "presence.updated", group or user_group(USER), payload={"user_id": user_id, "status": "online"}, meta=meta
    )


async def follow(connection, conversation_id, cursor=0):
    """A synced connection following one conversation (its log is empty)."""
    await connection.release_held()
    stream = await connection.track(conversation_id, cursor)
    await asyncio.wait_for(stream.wait(), WAIT_SECONDS)
    return stream


async def test_log_events_before_the_first_sync_are_held_then_replayed_in_arrival_order(connection, consumer, hub, log):
    # The log is empty: every frame below can only come from the held events.
    own_group = user_group(USER)
    await connection.deliver(change_message(created(10), own_group))
    await connection.deliver(change_message(added(20, 4), own_group))
    await connection.deliver(change_message(created(10), own_group))  # the layer delivered it twice
    await connection.deliver(change_message(removal(10, 2, user_id=USER), own_group))
    assert consumer.sent.items == []
    assert hub.subscribed == []

    await connection.release_held()
    await asyncio.wait_for(
        asyncio.gather(*(stream.wait() for stream in list(connection.streams.values()))), WAIT_SECONDS
    )
    await consumer.sent.wait_for(3)

    frames = sent(consumer)
    assert [f for f in frames if f["conversation_id"] == 10] == [
        event_frame(created(10)),
        event_frame(removal(10, 2, user_id=USER)),
    ]
    assert [f for f in frames if f["conversation_id"] == 20] == [event_frame(added(20, 4))]
    assert len(frames) == 3
    assert hub.subscribed == [conversation_group(10), conversation_group(20)]
    assert hub.unsubscribed == [conversation_group(10)]  # removed at seq 2: no longer followed
    assert {cid: s.cursor for cid, s in connection.streams.items()} == {20: 4}
    assert sorted(log.reads) == [(10, 0, None, REFILL_BATCH), (20, 3, None, REFILL_BATCH)]


async def test_more_held_events_than_the_limit_close_with_too_far_behind(connection, consumer, hub, settings):
    settings.WS_MAX_HELD_EVENTS = 3
    for seq in (1, 2, 3):
        await connection.deliver(change_message(added(10 + seq, seq), user_group(USER)))
    await asyncio.sleep(0)
    assert hub.tasks == []
    assert consumer.closes == []

    await connection.deliver(change_message(added(14, 4), user_group(USER)))
    assert len(hub.tasks) == 1  # the fourth is one too many: the close is under way
    await connection.deliver(change_message(added(15, 5), user_group(USER)))  # before it ran
    await asyncio.wait_for(asyncio.gather(*hub.tasks), WAIT_SECONDS)

    assert consumer.closes == [(close_codes.TOO_FAR_BEHIND, "send sync after hello")]
    assert close_codes.TOO_FAR_BEHIND == 4429
    assert connection.closed
    await connection.deliver(presence("after-close"))
    assert consumer.sent.items == []


async def test_events_outside_conversations_are_delivered_once_per_event_id(connection, consumer):
    # Presence goes to every conversation of the user: one connection gets it through several groups.
    await connection.deliver(presence("e1", conversation_group(10)))
    await connection.deliver(presence("e1", conversation_group(20)))
    await connection.deliver(presence("e1", user_group(USER)))
    await connection.deliver(presence("e2", conversation_group(10)))
    await connection.deliver(presence(None))
    await connection.deliver(presence(None))

    assert consumer.sent.items == [
        presence("e1")["text"],
        presence("e2")["text"],
        presence(None)["text"],
        presence(None)["text"],
    ]


async def test_a_users_own_typing_is_not_sent_to_their_other_devices(connection, consumer):
    await follow(connection, 10)

    def typing(user_id):
        return plain_message(
            "typing",
            conversation_group(10),
            conversation_id=10,
            payload={"user_id": user_id, "device_id": 99, "state": "start", "expires_in": 6},
            meta={"user_id": user_id},
        )

    await connection.deliver(typing(USER))
    await connection.deliver(typing(OTHER_USER))

    assert consumer.sent.items == [typing(OTHER_USER)["text"]]


async def test_state_events_go_out_only_for_followed_conversations(connection, consumer):
    def receipts(conversation_id):
        return plain_message(
            "receipts.updated",
            conversation_group(conversation_id),
            conversation_id=conversation_id,
            payload={"receipts": [{"user_id": OTHER_USER, "delivered_seq": 3, "read_seq": 2}]},
        )

    await connection.deliver(receipts(10))  # before sync: followed by nobody
    assert consumer.sent.items == []
    await follow(connection, 10)

    await connection.deliver(receipts(11))
    await connection.deliver(receipts(10))

    assert consumer.sent.items == [receipts(10)["text"]]


async def test_device_revoked_closes_and_stops_everything(connection, consumer):
    stream = await follow(connection, 10)
    revoked = plain_message("device.revoked", device_group(7), payload={"device_id": 7})

    await connection.deliver(revoked)
    await connection.deliver(revoked)
    await connection.deliver(presence("e1"))
    await connection.deliver(change_message(change(10, 1), conversation_group(10)))

    assert consumer.closes == [(close_codes.DEVICE_REVOKED, "device revoked")]
    assert close_codes.DEVICE_REVOKED == 4410
    assert stream.ended
    assert consumer.sent.items == []


@pytest.mark.parametrize("joining", [created(30, 1), added(30, 5)], ids=["conversation.created", "member.added"])
async def test_a_joining_event_on_the_users_own_group_starts_following(connection, consumer, hub, log, joining):
    await connection.release_held()  # synced, following nothing
    seq = joining.seq
    ignored = [
        change_message(change(30, seq), user_group(USER)),  # not a joining kind
        change_message(joining, conversation_group(30)),  # not the user's own group
        change_message(joining, user_group(OTHER_USER)),
    ]
    for message in ignored:
        await connection.deliver(message)
    assert hub.subscribed == []
    assert connection.streams == {}

    await connection.deliver(change_message(joining, user_group(USER)))
    await asyncio.wait_for(connection.streams[30].wait(), WAIT_SECONDS)
    await connection.deliver(change_message(change(30, seq + 1), conversation_group(30)))

    assert hub.subscribed == [conversation_group(30)]
    assert log.reads == [(30, seq - 1, None, REFILL_BATCH)]  # read from just before the join
    assert sent(consumer) == [event_frame(joining), event_frame(change(30, seq + 1))]
    assert connection.streams[30].cursor == seq + 1
