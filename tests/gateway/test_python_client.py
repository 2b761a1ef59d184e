"""The Python client (clients/python) against a real server: live delivery,
catch-up after a dropped connection with nothing lost or repeated, sends that
survive the drop without duplicates, and the close-code policy (no retry on
4401 or 4410; the overloaded hint honoured on 4503)."""

import asyncio

from channels.db import database_sync_to_async
from django.test import Client as HttpClient
from realtime_sync_client import Backoff, Client, ClientStopped, close_codes

from conversations.models import Message
from conversations.services import create_conversation
from devices.models import Device as DeviceModel
from devices.services import revoke_device

from .conftest import SHARED_SERVER_ENV
from .harness import FRAME_TIMEOUT, ServerProcess

db = database_sync_to_async
# Long enough that a dropped client never comes back on its own during a test:
# the test says when, with reconnect_now().
HELD = Backoff(initial=60, maximum=60)


class Collected:
    """What a callback was given, in order; `until` waits for a condition on it."""

    def __init__(self):
        self.items: list = []
        self._changed = asyncio.Condition()

    async def __call__(self, *args):
        async with self._changed:
            self.items.append(args[0] if len(args) == 1 else args)
            self._changed.notify_all()

    async def until(self, condition, timeout: float = FRAME_TIMEOUT):
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: condition(self.items))


def seqs(events, conversation_id):
    return [e.seq for e in events if e.conversation_id == conversation_id]


async def test_a_send_reaches_the_other_members_device_live(server, account):
    (alice, (alice_token,)), (bob, (bob_token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cid = conversation.pk
    bob_events = Collected()
    async with Client(server.url, token=alice_token) as phone, Client(server.url, token=bob_token, on_event=bob_events):
        result = await phone.send(cid, "Tea at five?")
        assert (result.seq, result.duplicate) == (2, False)
        await bob_events.until(lambda events: 2 in seqs(events, cid))
        created = bob_events.items[-1]
        assert created.kind == "message.created"
        assert (created.message.body, created.message.sender, created.message.id) == (
            "Tea at five?",
            alice.pk,
            result.message_id,
        )
        assert seqs(bob_events.items, cid) == [1, 2]  # conversation.created from the first sync, then live


async def test_after_a_dropped_connection_the_missed_changes_come_once_and_in_order(server, account):
    (alice, (alice_token,)), (bob, (bob_token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cid = conversation.pk
    events, disconnects = Collected(), Collected()
    async with (
        Client(server.url, token=alice_token) as alice_phone,
        Client(server.url, token=bob_token, backoff=HELD, on_event=events, on_disconnected=disconnects) as bob_phone,
    ):
        await alice_phone.send(cid, "live")
        await events.until(lambda items: 2 in seqs(items, cid))

        # Bob's network goes away (no close frame), with a send of his in flight:
        # it may or may not have reached the server.
        in_flight = asyncio.create_task(bob_phone.send(cid, "in flight", client_msg_id="bob-1"))
        await asyncio.sleep(0)  # a chance to reach the socket; either way it must be stored once
        bob_phone.connection.abort()
        await disconnects.until(lambda items: len(items) == 1)
        assert disconnects.items[0][1] >= 30  # waiting to reconnect (backoff with jitter), not stopped
        assert not bob_phone.connected

        for i in range(5):
            await alice_phone.send(cid, f"missed {i}")
        offline = asyncio.create_task(bob_phone.send(cid, "written offline", client_msg_id="bob-2"))

        bob_phone.reconnect_now()
        first, second = await asyncio.wait_for(asyncio.gather(in_flight, offline), FRAME_TIMEOUT)
        last = max(first.seq, second.seq)
        await events.until(lambda items: last in seqs(items, cid))
        assert seqs(events.items, cid) == list(range(1, last + 1))  # every change once, in order
        bodies = [e.message.body for e in events.items if e.kind == "message.created"]
        assert [b for b in bodies if b.startswith("missed")] == [f"missed {i}" for i in range(5)]
        assert bodies.count("in flight") == 1 and bodies.count("written offline") == 1
        assert bob_phone.cursors == {cid: last}
        assert bob_phone.attempts == 2

    stored = await db(lambda: list(Message.objects.filter(sender=bob).values_list("client_msg_id", flat=True)))()
    assert sorted(stored) == ["bob-1", "bob-2"]  # the retried send was stored once


async def test_an_unknown_token_is_refused_and_not_retried(server, account):
    await account()
    disconnects = Collected()
    client = Client(server.url, token="not-a-token", backoff=Backoff(initial=0.01), on_disconnected=disconnects)
    try:
        stopped = None
        try:
            await asyncio.wait_for(client.start(), FRAME_TIMEOUT)
        except ClientStopped as error:
            stopped = error
        assert stopped is not None and stopped.code == close_codes.UNAUTHORIZED
        assert client.attempts == 1
        assert disconnects.items == [(close_codes.UNAUTHORIZED, None)]
    finally:
        await client.close()


async def test_a_revoked_device_stops_the_client_and_fails_its_queued_sends(server, account):
    (alice, (token,)) = await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group")
    disconnects = Collected()
    async with Client(server.url, token=token, backoff=Backoff(initial=0.01), on_disconnected=disconnects) as client:
        device = await db(DeviceModel.objects.get)(pk=client.hello.device_id)
        await db(revoke_device)(device=device)
        await disconnects.until(lambda items: items)
        assert disconnects.items == [(close_codes.DEVICE_REVOKED, None)]
        assert client.stopped is not None and client.stopped.code == close_codes.DEVICE_REVOKED
        try:
            await client.send(conversation.pk, "after revocation")
            raise AssertionError("a stopped client accepted a send")
        except ClientStopped:
            pass
        assert client.attempts == 1


async def test_an_overloaded_server_is_retried_after_its_hint(transactional_db, account):
    _, (token,) = await account()
    retry = 0.05
    # Nothing is set up and nobody may wait in line: every connection is turned away at once.
    overloaded = ServerProcess(
        **SHARED_SERVER_ENV, WS_MAX_CONNECTING="0", WS_MAX_CONNECT_QUEUE="0", WS_OVERLOAD_RETRY_SECONDS=str(retry)
    )
    await asyncio.to_thread(overloaded.start)
    disconnects = Collected()
    # A backoff far from the hint, so a delay taken from it could not pass for the hint.
    client = Client(overloaded.url, token=token, backoff=Backoff(initial=5, maximum=10), on_disconnected=disconnects)
    starting = asyncio.create_task(client.start())
    try:
        await disconnects.until(lambda items: len(items) >= 3)
        for code, delay in disconnects.items[:3]:
            assert code == close_codes.GOING_AWAY
            assert retry <= delay <= 2 * retry  # the server's retry_after, not the backoff
        assert not starting.done()  # still trying: 4503 is never final
    finally:
        await client.close()
        starting.cancel()
        await asyncio.to_thread(overloaded.stop)


async def test_a_session_cookie_connects_as_the_sessions_own_device(server, account):
    user, _ = await account(username="sam")

    @db
    def session_id():
        http = HttpClient()
        assert http.login(username="sam", password="correct horse battery staple")
        return http.cookies["sessionid"].value

    async with Client(server.url, session_id=await session_id()) as client:
        assert client.hello.user_id == user.pk
        assert client.hello.device_name == "browser session"
