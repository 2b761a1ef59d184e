"""Crowds: admission control during a connection storm, and presence that does
not grow with the size of a room."""

import asyncio
import random

import pytest
from channels.db import database_sync_to_async

from conversations.services import create_conversation
from gateway import close_codes

from .conftest import SHARED_SERVER_ENV
from .harness import Closed, Device, ServerProcess

db = database_sync_to_async

MAX_CONNECTING = 2
RETRY_SECONDS = 0.1


def crowded(queue: int) -> ServerProcess:
    """A server that sets up at most two connections at a time and lets `queue` more wait."""
    env = {
        **SHARED_SERVER_ENV,
        "WS_MAX_CONNECTING": str(MAX_CONNECTING),
        "WS_MAX_CONNECT_QUEUE": str(queue),
        "WS_OVERLOAD_RETRY_SECONDS": str(RETRY_SECONDS),
    }
    return ServerProcess(**env).start()


@pytest.fixture
def crowded_server(transactional_db):
    """A line of three: most of a crowd of thirty is turned away at first."""
    server = crowded(queue=3)
    yield server
    server.stop()


@pytest.fixture
def queueing_server(transactional_db):
    """A line long enough for the whole crowd."""
    server = crowded(queue=100)
    yield server
    server.stop()


async def connect_honouring_retry_hints(url: str, token: str, refusals: list) -> Device:
    """Connect, and when turned away as overloaded, wait the hint and try again."""
    for _ in range(200):
        device = Device(url, token)
        await device.connect(expect_hello=False)
        first = await device.next_frame()
        if first["type"] == "hello":
            device.hello = first
            return device
        assert first["type"] == "error" and first["code"] == "overloaded" and first["ref"] is None, first
        with pytest.raises(Closed):
            await device.next_frame()
        assert device.close_code == close_codes.GOING_AWAY
        refusals.append(first["details"]["retry_after"])
        await asyncio.sleep(first["details"]["retry_after"])
    raise AssertionError("never admitted")


async def test_a_connection_storm_is_turned_away_with_retry_hints_and_all_get_in(crowded_server, account):
    owner, _ = await account()
    people = [await account() for _ in range(30)]
    conversation, _ = await db(create_conversation)(
        creator=owner, kind="group", member_ids=[user.pk for user, _ in people]
    )
    refusals: list[float] = []
    devices = await asyncio.gather(
        *(connect_honouring_retry_hints(crowded_server.url, tokens[0], refusals) for _, tokens in people)
    )
    # Everyone syncs at once too: syncs count against the same limit, but
    # connections already set up are never turned away.
    replies = await asyncio.gather(*(device.request("sync", cursors={}) for device in devices))
    assert all(reply["type"] == "ok" for reply in replies), replies
    assert all(device.seqs(conversation.pk) == [1] for device in devices)
    assert refusals, "30 handshakes at once never exceeded a limit of 2 and a line of 3"
    # At least the floor; more when the line ahead is long (up to 3 waiting, at
    # no slower than one set-up per second).
    assert all(RETRY_SECONDS <= hint <= 2 * 3.0 for hint in refusals), refusals
    for device in devices:
        await device.close()


async def test_a_storm_within_the_line_waits_its_turn_and_nobody_is_refused(queueing_server, account):
    people = [await account() for _ in range(30)]
    devices = await asyncio.gather(*(Device(queueing_server.url, tokens[0]).connect() for _, tokens in people))
    assert all(device.hello["type"] == "hello" for device in devices)
    assert not [f for device in devices for f in device.frames if f.get("code") == "overloaded"]
    for device in devices:
        await device.close()


async def test_presence_in_a_large_room_goes_to_subscribers_only(server, account):
    """The shared server pushes presence through conversations of at most 50
    members (PRESENCE_LIVE_MAX_MEMBERS); past that only subscribers hear it."""
    (alice, (alice_token,)), (bob, (bob_token,)), (carol, (carol_token,)) = [await account() for _ in range(3)]
    crowd = [user for user, _ in [await account() for _ in range(50)]]
    room, _ = await db(create_conversation)(
        creator=alice, kind="group", member_ids=[bob.pk, carol.pk, *(u.pk for u in crowd)]
    )
    bob_device = await Device(server.url, bob_token, name="bob").connect()
    carol_device = await Device(server.url, carol_token, name="carol").connect()
    for device in (bob_device, carol_device):
        assert (await device.request("sync", cursors={}))["type"] == "ok"
    reply = await carol_device.request("presence.subscribe", user_ids=[alice.pk, 999_999_999])
    assert reply["result"] == {"presence": [{"user_id": alice.pk, "status": "offline", "last_seen_at": None}]}

    def alice_is(status):
        return lambda f: (
            f.get("kind") == "presence.updated"
            and f["payload"] == {**f["payload"], "user_id": alice.pk, "status": status}
        )

    alice_device = await Device(server.url, alice_token, name="alice").connect()
    await carol_device.wait_for(alice_is("online"))
    # Bob follows the room too, but it is past the limit: he hears nothing of
    # alice until he subscribes. Then both hear her go offline, once each.
    assert (await bob_device.request("presence.subscribe", user_ids=[alice.pk]))["result"]["presence"][0][
        "status"
    ] == "online"
    await alice_device.close()
    for device in (bob_device, carol_device):
        await device.wait_for(alice_is("offline"))
    bob_heard = [f["payload"]["status"] for f in bob_device.frames if alice_is(f.get("payload", {}).get("status"))(f)]
    carol_heard = [
        f["payload"]["status"] for f in carol_device.frames if alice_is(f.get("payload", {}).get("status"))(f)
    ]
    assert bob_heard == ["offline"]
    assert carol_heard == ["online", "offline"]
    assert room.pk in {f.get("conversation_id") for f in bob_device.frames}
    for device in (bob_device, carol_device):
        await device.close()


async def test_presence_subscribe_rejects_what_is_not_a_list_of_ids(server, account):
    _, (token,) = await account()
    device = await Device(server.url, token).connect()
    for bad in (None, "1", [1, "2"], [True], [0], list(range(1, 502))):
        reply = await device.request("presence.subscribe", user_ids=bad)
        assert (reply["type"], reply["code"], reply["field"]) == ("error", "invalid", "user_ids"), bad
    assert (await device.request("presence.subscribe", user_ids=[random.randint(10**6, 10**7)]))["result"] == {
        "presence": []
    }
    await device.close()
