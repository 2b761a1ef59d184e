"""Exactly-once, in-order delivery under concurrent writes and connection churn.

Four users with two devices each share four group conversations with
overlapping membership. Every device runs its own writer: it sends, edits and
deletes messages over its WebSocket, marks conversations read, pings, and now
and then disconnects (a clean close or a dropped TCP connection) and reconnects,
to either of two server processes, resuming with `sync` from the highest seq it
received in each conversation. Meanwhile the test process writes through the
services directly (sends, edits, renames).

When the writers stop, one last "barrier" message goes into each conversation;
since every stream is gapless and in order, a device holding the barrier holds
everything before it. Then, for every device and each of its conversations, the
seqs received over all of its connections, in order, must be exactly
1..last_seq of the database's change log, each with the log's kind and payload.

Decisions (what to do, when to disconnect, where to reconnect) come from a
seeded random.Random, so a failing run can be replayed with the same choices.
"""

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

import psycopg
import pytest
from channels.db import database_sync_to_async

from conversations.models import Change, Conversation, Message
from conversations.services import create_conversation, edit_message, rename_conversation, send_message
from presence.models import UserPresence

from .harness import Device, ServerProcess, database_url

SEED = 20240611
USERS = 4
DEVICES_PER_USER = 2
# Conversation -> the indexes of its members; the first creates it (and owns it).
MEMBERS = [(0, 1, 2), (1, 2, 3), (2, 0, 3), (3, 0, 1, 2)]
ACTIONS_PER_DEVICE = 26
SERVICE_WRITES = 30
TIME_LIMIT = 45  # seconds, for everything after the servers are up
BARRIER_TIMEOUT = 15
# Far above anything one conversation can miss here, so no sync is answered with a reset.
SYNC_MAX_CHANGES = "1000"
EDIT_RACE_ERRORS = {"version_conflict", "message_deleted"}  # two devices of one user editing at once


@dataclass
class Sent:
    conversation_id: int
    message_id: int
    seq: int
    version: int = 1
    deleted: bool = False


@dataclass
class Tally:
    sends: dict = field(default_factory=dict)  # client_msg_id -> Sent (WebSocket sends)
    edits: int = 0
    deletes: int = 0
    service_writes: int = 0
    edit_races: int = 0
    disconnects: int = 0
    caught_up: int = 0  # events a device received before its sync's `ok`
    before_hello: int = 0  # frames that arrived ahead of a connection's hello
    unexpected: list = field(default_factory=list)


class StressDevice:
    """One device across all of its connections."""

    def __init__(self, name, user, token, conversation_ids, servers, rng, tally, owned):
        self.name = name
        self.user = user
        self.token = token
        self.conversation_ids = conversation_ids
        self.servers = servers
        self.rng = rng
        self.tally = tally
        self.owned = owned  # client_msg_id -> Sent for every message of this user (shared by its devices)
        self.connections: list[Device] = []
        self.current: Device | None = None
        self.counter = 0

    # What it holds

    def seqs(self, conversation_id) -> list[int]:
        return [seq for connection in self.connections for seq in connection.seqs(conversation_id)]

    def events(self, conversation_id) -> list[dict]:
        return [event for connection in self.connections for event in connection.events(conversation_id)]

    def frames(self) -> list[dict]:
        return [frame for connection in self.connections for frame in connection.frames]

    def cursors(self, frames=None) -> dict[str, int]:
        """The highest seq received per conversation (in `frames`, or everything so far)."""
        if frames is None:
            frames = self.frames()
        top = dict.fromkeys(self.conversation_ids, 0)
        for f in frames:
            if f["type"] == "event" and "seq" in f and f.get("conversation_id") in top:
                top[f["conversation_id"]] = max(top[f["conversation_id"]], f["seq"])
        return {str(cid): seq for cid, seq in top.items()}

    # Connections

    async def connect(self) -> None:
        server = self.rng.choice(self.servers)
        connection = Device(server.url, self.token, name=f"{self.name}.{len(self.connections)}")
        await connection.connect(expect_hello=False)
        # `hello` should be the first frame; a presence event can overtake it (see
        # test_hello_comes_before_any_event below), which this test tolerates and counts.
        connection.hello = await connection.wait_for(lambda f: f["type"] == "hello")
        early = connection.frames[: connection.frames.index(connection.hello)]
        assert all(f["type"] == "event" and "conversation_id" not in f for f in early), early
        self.tally.before_hello += len(early)
        self.connections.append(connection)
        self.current = connection
        cursors = self.cursors()
        reply = await connection.request("sync", cursors=cursors)
        assert reply["type"] == "ok", (self.name, reply)
        # The reply comes after the catch-up and names where each stream now is:
        # exactly the highest seq this device had received when the reply came.
        before_reply = connection.frames[: connection.frames.index(reply)]
        had = self.cursors([f for c in self.connections[:-1] for f in c.frames] + before_reply)
        assert reply["result"]["cursors"] == had, (self.name, reply, had)
        assert reply["result"]["reset"] == [] and reply["result"]["gone"] == [], reply
        self.tally.caught_up += sum(1 for f in before_reply if f["type"] == "event" and "seq" in f)

    async def disconnect(self) -> None:
        connection, self.current = self.current, None
        self.tally.disconnects += 1
        if self.rng.random() < 0.5:
            await connection.close()
        else:  # the network goes away: no close handshake
            connection.abort()
            await connection.wait_closed()

    # Writing

    def _next_id(self) -> str:
        self.counter += 1
        return f"{self.name}-{self.counter}"

    async def send(self) -> None:
        conversation_id = self.rng.choice(self.conversation_ids)
        client_msg_id = self._next_id()
        reply = await self.current.request(
            "send", conversation_id=conversation_id, client_msg_id=client_msg_id, body=f"hello from {client_msg_id}"
        )
        if reply["type"] != "ok" or reply["result"]["duplicate"]:
            self.tally.unexpected.append((self.name, "send", reply))
            return
        result = reply["result"]
        sent = Sent(conversation_id, result["message_id"], result["seq"])
        self.tally.sends[client_msg_id] = self.owned[client_msg_id] = sent

    async def edit(self, sent: Sent) -> None:
        reply = await self.current.request(
            "edit",
            conversation_id=sent.conversation_id,
            message_id=sent.message_id,
            body=f"edited by {self._next_id()}",
            version=sent.version,
        )
        if reply["type"] == "ok":
            sent.version = reply["result"]["message"]["version"]
            self.tally.edits += 1
        elif reply["type"] == "error" and reply["code"] in EDIT_RACE_ERRORS:
            self.tally.edit_races += 1
            sent.version = reply.get("details", {}).get("current_version", sent.version)
        else:
            self.tally.unexpected.append((self.name, "edit", reply))

    async def delete(self, sent: Sent) -> None:
        reply = await self.current.request("delete", conversation_id=sent.conversation_id, message_id=sent.message_id)
        if reply["type"] != "ok" or not reply["result"]["message"]["deleted"]:
            self.tally.unexpected.append((self.name, "delete", reply))
            return
        sent.deleted = True
        self.tally.deletes += 1

    async def read(self) -> None:
        conversation_id = self.rng.choice(self.conversation_ids)
        seq = max(self.seqs(conversation_id), default=0)
        reply = await self.current.request("read", conversation_id=conversation_id, seq=seq)
        if reply["type"] != "ok" or reply["result"]["read_seq"] < seq:
            self.tally.unexpected.append((self.name, "read", reply))

    async def ping(self) -> None:
        reply = await self.current.request("ping")
        if reply["type"] != "pong":
            self.tally.unexpected.append((self.name, "ping", reply))

    async def run(self, actions: int) -> None:
        for _ in range(actions):
            await asyncio.sleep(self.rng.uniform(0, 0.015))  # interleaving only
            if self.current is None:
                await self.connect()
                continue
            roll = self.rng.random()
            mine = [s for s in self.owned.values() if not s.deleted]
            if roll < 0.10:
                await self.disconnect()
                if self.rng.random() < 0.6:
                    await self.connect()
            elif roll < 0.62 or not mine:
                await self.send()
            elif roll < 0.77:
                await self.edit(self.rng.choice(mine))
            elif roll < 0.87:
                await self.delete(self.rng.choice(mine))
            elif roll < 0.94:
                await self.read()
            else:
                await self.ping()
        if self.current is None:
            await self.connect()

    async def wait_for_seqs(self, targets: dict[int, int], timeout: float) -> None:
        """Until this device holds seq `targets[c]` of every conversation c."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while missing := {c: s for c, s in targets.items() if max(self.seqs(c), default=0) < s}:
            remaining = deadline - loop.time()
            assert remaining > 0, f"{self.name} never received {missing}; it has {self.cursors()}"
            await self.current.next_frame(remaining)


class ServiceCalls:
    """Service writes from the test process. Each runs to completion even if the
    test stops waiting for it, and `drain` waits for all of them, so no write (nor
    its publish after commit, which needs this event loop) outlives the test."""

    def __init__(self):
        self.pending: set[asyncio.Future] = set()

    async def __call__(self, function, **kwargs):
        task = asyncio.ensure_future(database_sync_to_async(function)(**kwargs))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return await asyncio.shield(task)

    async def drain(self) -> None:
        if self.pending:
            await asyncio.wait(set(self.pending))


async def _service_writer(call, rng, users, conversations, tally) -> None:
    """Writes through the services from the test process, alongside the devices."""
    own_messages = []
    for n in range(SERVICE_WRITES):
        await asyncio.sleep(rng.uniform(0, 0.03))  # interleaving only
        roll = rng.random()
        if roll < 0.15:
            conversation, members = rng.choice(conversations)
            await call(
                rename_conversation, actor=users[members[0]], conversation_id=conversation.pk, title=f"renamed {n}"
            )
        elif roll < 0.3 and own_messages:
            user, message = rng.choice(own_messages)
            message = await call(
                edit_message,
                actor=user,
                conversation_id=message.conversation_id,
                message_id=message.pk,
                body=f"service edit {n}",
                expected_version=message.version,
            )
            own_messages = [(u, message if m.pk == message.pk else m) for u, m in own_messages]
        else:
            conversation, members = rng.choice(conversations)
            user = users[rng.choice(members)]
            result = await call(
                send_message,
                sender=user,
                conversation_id=conversation.pk,
                client_msg_id=f"service-{n}",
                body=f"service {n}",
            )
            assert result.created
            own_messages.append((user, result.message))
        tally.service_writes += 1


@database_sync_to_async
def _log() -> dict[int, list[Change]]:
    changes = {}
    for change in Change.objects.order_by("conversation_id", "seq"):
        changes.setdefault(change.conversation_id, []).append(change)
    return changes


@database_sync_to_async
def _last_seqs() -> dict[int, int]:
    return dict(Conversation.objects.values_list("pk", "last_seq"))


@database_sync_to_async
def _messages() -> dict[str, Message]:
    return {m.client_msg_id: m for m in Message.objects.all()}


def _unredacted(payload: dict) -> dict:
    """A payload without its body: a delete erases the body from earlier log entries
    after they were delivered live, so only the rest must match the log."""
    return {k: v for k, v in payload.items() if k not in ("body", "redacted")}


@pytest.mark.postgres  # two server processes and the test process writing at once
@pytest.mark.redis
async def test_every_device_gets_every_change_exactly_once_in_order(transactional_db, make_user, make_device):
    rng = random.Random(SEED)
    users = [await database_sync_to_async(make_user)() for _ in range(USERS)]
    conversations = []
    for members in MEMBERS:
        conversation, _ = await database_sync_to_async(create_conversation)(
            creator=users[members[0]], kind="group", member_ids=[users[i].pk for i in members[1:]]
        )
        conversations.append((conversation, members))

    servers = [await asyncio.to_thread(ServerProcess(SYNC_MAX_CHANGES=SYNC_MAX_CHANGES).start) for _ in range(2)]
    tally = Tally()
    call = ServiceCalls()
    devices: list[StressDevice] = []
    try:
        async with asyncio.timeout(TIME_LIMIT):
            for u, user in enumerate(users):
                owned = {}
                conversation_ids = [c.pk for c, members in conversations if u in members]
                for d in range(DEVICES_PER_USER):
                    _, token = await database_sync_to_async(make_device)(user, f"device {d}")
                    device = StressDevice(
                        f"u{u}d{d}", user, token, conversation_ids, servers, random.Random(rng.random()), tally, owned
                    )
                    await device.connect()
                    devices.append(device)

            # A failure anywhere cancels the other writers.
            async with asyncio.TaskGroup() as writers:
                for device in devices:
                    writers.create_task(device.run(ACTIONS_PER_DEVICE))
                writers.create_task(_service_writer(call, random.Random(rng.random()), users, conversations, tally))

            barriers = {}
            for conversation, members in conversations:
                result = await call(
                    send_message,
                    sender=users[members[-1]],
                    conversation_id=conversation.pk,
                    client_msg_id=f"barrier-{conversation.pk}",
                    body="barrier",
                )
                barriers[conversation.pk] = result.message.seq
            await asyncio.gather(
                *(
                    device.wait_for_seqs({c: barriers[c] for c in device.conversation_ids}, BARRIER_TIMEOUT)
                    for device in devices
                )
            )
    finally:
        await call.drain()
        for device in devices:
            if device.current is not None and device.current.ws is not None:
                with contextlib.suppress(Exception):
                    await device.current.close()
        for server in servers:
            await asyncio.to_thread(server.stop)

    assert tally.unexpected == []
    log = await _log()
    last_seqs = await _last_seqs()
    ids = [c.pk for c, _ in conversations]
    # The barrier is the last change of each conversation.
    assert {c: last_seqs[c] for c in ids} == barriers
    for conversation_id in ids:
        assert [c.seq for c in log[conversation_id]] == list(range(1, last_seqs[conversation_id] + 1))

    # The load was what it claims to be: bounded, mixed, and with real churn.
    writes = len(tally.sends) + tally.edits + tally.deletes + tally.service_writes + len(barriers)
    assert 150 <= writes <= 300, tally
    assert sum(last_seqs[c] for c in ids) == writes + len(ids)  # + conversation.created
    assert tally.edits >= 10 and tally.deletes >= 5 and tally.service_writes == SERVICE_WRITES, tally
    assert tally.disconnects >= 10 and tally.caught_up > 0, tally
    kinds = {change.kind for changes in log.values() for change in changes}
    assert kinds == {
        Change.Kind.CONVERSATION_CREATED,
        Change.Kind.CONVERSATION_RENAMED,
        Change.Kind.MESSAGE_CREATED,
        Change.Kind.MESSAGE_EDITED,
        Change.Kind.MESSAGE_DELETED,
    }

    # Every acknowledged WebSocket send is stored where its reply said.
    stored = await _messages()
    for client_msg_id, sent in tally.sends.items():
        message = stored[client_msg_id]
        assert (message.pk, message.seq, message.conversation_id) == (sent.message_id, sent.seq, sent.conversation_id)

    for device in devices:
        frames = device.frames()
        assert [f for f in frames if f["type"] == "reset"] == [], device.name
        # Nothing from conversations the user is not in.
        foreign = {f.get("conversation_id") for f in frames if f["type"] == "event"} - set(device.conversation_ids)
        assert foreign <= {None}, (device.name, foreign)
        for conversation_id in device.conversation_ids:
            changes = log[conversation_id]
            events = device.events(conversation_id)
            seq_events = [e for e in events if "seq" in e]
            assert [e["seq"] for e in seq_events] == list(range(1, last_seqs[conversation_id] + 1)), (
                device.name,
                conversation_id,
                len(device.connections),
            )
            assert [e["kind"] for e in seq_events] == [c.kind for c in changes], (device.name, conversation_id)
            for event, change in zip(seq_events, changes, strict=True):
                assert _unredacted(event["payload"]) == _unredacted(change.payload), (device.name, event, change)
                if change.payload.get("redacted"):
                    # Deleted since: the log's copy is erased; the device may have got it before.
                    assert change.payload["body"] == ""
                else:
                    assert event["payload"].get("body") == change.payload.get("body"), (device.name, event, change)
            # Events without a seq are state (receipts, typing), never a change of the log.
            assert not {e["kind"] for e in events if "seq" not in e} & set(Change.Kind.values)


@pytest.mark.postgres  # the handshake is held by a row lock, seen waiting in pg_stat_activity
async def test_hello_comes_before_any_event(transactional_db, make_user, make_device):
    """`hello` is the first frame of every accepted connection (docs/protocol.md §3).

    The connection joins its user's group before it sends `hello`, and events
    without a conversation (presence) are forwarded at once. So a contact's
    presence change during the handshake reaches the device ahead of `hello`.
    Here the handshake is held at that point for certain: the device's presence
    write waits on a row lock this test holds on its user's presence.
    """
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    _, alice_token = await database_sync_to_async(make_device)(alice, "phone")
    _, bob_token = await database_sync_to_async(make_device)(bob, "laptop")
    await database_sync_to_async(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    await database_sync_to_async(UserPresence.objects.get_or_create)(user_id=alice.pk)

    server = await asyncio.to_thread(ServerProcess(PRESENCE_COALESCE_SECONDS="0.1").start)
    lock = await psycopg.AsyncConnection.connect(database_url())
    devices = []
    try:
        await lock.execute(f"SELECT 1 FROM {UserPresence._meta.db_table} WHERE user_id = %s FOR UPDATE", [alice.pk])
        alice_phone = Device(server.url, alice_token, name="alice")
        devices.append(alice_phone)
        await alice_phone.connect(expect_hello=False)
        await _until_a_session_waits_on_a_lock()
        # Bob comes online: his presence goes to his contacts, alice included.
        bob_laptop = Device(server.url, bob_token, name="bob")
        devices.append(bob_laptop)
        await bob_laptop.connect()
        bob_online = await bob_laptop.wait_for(lambda f: f.get("kind") == "presence.updated")
        assert bob_online["payload"] == {"user_id": bob.pk, "status": "online", "last_seen_at": None}
        # The broadcast went to alice's group before bob's (contacts in id order) through
        # the same server, so alice's connection has been handed it by now. Let her in.
        await lock.commit()
        first = await alice_phone.next_frame(timeout=10)
        assert first["type"] == "hello", f"the first frame was not hello but {first}"
    finally:
        await lock.close()
        for device in devices:
            if device.ws is not None:
                with contextlib.suppress(Exception):
                    await device.close()
        await asyncio.to_thread(server.stop)


async def _until_a_session_waits_on_a_lock(timeout: float = 10) -> None:
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as probe:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            cursor = await probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if (await cursor.fetchone())[0]:
                return
            assert loop.time() < deadline, "the handshake never reached the locked row"
            await asyncio.sleep(0.02)  # polling the database, not waiting for time to pass
