"""Graceful shutdown of a real server process on SIGTERM.

One device pipelines `send` requests (each with a new client_msg_id) while
another device keeps a request in flight (its `send` waits on a row lock the
test holds), so the server is caught draining: it must stop taking requests,
turn new connections away with GOING_AWAY, let the request in flight commit and
answer it, then close every connection with GOING_AWAY and exit.

Afterwards: every acknowledged send is in the database at the seq its reply
named; a send refused as `unavailable` was not written; a send with no reply is
either absent or, retried on a new server with the same client_msg_id, answered
as a duplicate of the stored message. The listening device, resuming on the new
server, has every change exactly once.
"""

import asyncio
import json
import signal
import socket
import subprocess
import time

import psycopg
import pytest
from channels.db import database_sync_to_async

from conversations.models import Change, Conversation, Message
from conversations.services import create_conversation
from gateway import close_codes

from .harness import Closed, Device, ServerProcess, database_url

# A request is held in flight by a PostgreSQL row lock, seen waiting in pg_stat_activity.
pytestmark = pytest.mark.postgres

ACKED_BEFORE_SIGTERM = 10
PIPELINE_WINDOW = 5
MAX_SENDS = 600
SEND_PACE = 0.01  # seconds between pipelined sends: pacing only
EXIT_TIMEOUT = 20
CUT_OFF_EXIT_TIMEOUT = 8


async def connect(url: str, token: str, name: str) -> Device:
    """A connected device, once its `hello` arrived. A presence event may overtake
    the hello (a gateway fault with a test of its own in test_stress.py); it is
    tolerated here, where the subject is shutdown."""
    device = await Device(url, token, name=name).connect(expect_hello=False)
    device.hello = await device.wait_for(lambda f: f["type"] == "hello")
    early = device.frames[: device.frames.index(device.hello)]
    assert all(f["type"] == "event" and "conversation_id" not in f for f in early), early
    return device


class PipelinedSender:
    """Sends `send` requests without waiting for each reply (at most WINDOW
    outstanding) and files every reply under its client_msg_id."""

    def __init__(self, device: Device, conversation_id: int):
        self.device = device
        self.conversation_id = conversation_id
        self.sent: dict[str, str] = {}  # client_msg_id -> ref, in sending order
        self.replies: dict[str, dict] = {}  # client_msg_id -> ok / error frame
        self._by_ref: dict[str, str] = {}
        self._window = asyncio.Semaphore(PIPELINE_WINDOW)
        self.acked_enough = asyncio.Event()
        self.refused = asyncio.Event()  # an `unavailable` reply arrived: the server is draining
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._read_loop())]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome

    def body_of(self, client_msg_id: str) -> str:
        return f"body of {client_msg_id}"

    async def _send_loop(self) -> None:
        for n in range(MAX_SENDS):
            await self._window.acquire()
            client_msg_id = f"pipe-{n:04d}"
            ref = f"p{n}"
            self.sent[client_msg_id] = ref
            self._by_ref[ref] = client_msg_id
            frame = {
                "type": "send",
                "ref": ref,
                "conversation_id": self.conversation_id,
                "client_msg_id": client_msg_id,
                "body": self.body_of(client_msg_id),
            }
            try:
                await self.device.send_raw(json.dumps(frame))
            except Closed:
                return
            await asyncio.sleep(SEND_PACE)

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self.device.next_frame(timeout=60)
            except Closed:
                return
            client_msg_id = self._by_ref.get(frame.get("ref"))
            if client_msg_id is None or frame["type"] not in ("ok", "error"):
                continue
            assert client_msg_id not in self.replies, f"two replies for {client_msg_id}"
            self.replies[client_msg_id] = frame
            self._window.release()
            if frame["type"] == "error" and frame["code"] == "unavailable":
                self.refused.set()
            if sum(1 for r in self.replies.values() if r["type"] == "ok") >= ACKED_BEFORE_SIGTERM:
                self.acked_enough.set()

    def by_outcome(self) -> tuple[dict, list, list]:
        acked = {c: r["result"] for c, r in self.replies.items() if r["type"] == "ok"}
        refused = [c for c, r in self.replies.items() if r["type"] == "error" and r["code"] == "unavailable"]
        unanswered = [c for c in self.sent if c not in self.replies]
        return acked, refused, unanswered


class RowLock:
    """A conversation row locked FOR UPDATE by a separate database session, so a
    write to it on the server waits (a request kept in flight) until release."""

    def __init__(self, conversation_id: int):
        self.conversation_id = conversation_id
        self.conn: psycopg.AsyncConnection | None = None

    async def acquire(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(database_url())
        await self.conn.execute(
            f"SELECT id FROM {Conversation._meta.db_table} WHERE id = %s FOR UPDATE", [self.conversation_id]
        )

    async def wait_for_waiter(self, timeout: float = 10) -> None:
        """Until another session is blocked on a lock in this database."""
        await _until_sessions(
            "wait_event_type = 'Lock'",
            lambda count: count > 0,
            "the server's write never reached the locked row",
            timeout,
        )

    async def wait_for_no_statement(self, timeout: float = 10) -> None:
        """Until no other session of this database runs a statement (the
        write that waited for the row has committed or rolled back)."""
        await _until_sessions(
            "state = 'active' AND pid <> pg_backend_pid()",
            lambda count: count == 0,
            "the server's write is still running",
            timeout,
        )

    async def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.commit()
            await self.conn.close()


async def _until_sessions(condition: str, done, failure: str, timeout: float) -> None:
    """Poll how many sessions of the test database match `condition` until `done(count)`."""
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as probe:
        deadline = time.monotonic() + timeout
        while True:
            cursor = await probe.execute(
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND {condition}"
            )
            if done((await cursor.fetchone())[0]):
                return
            assert time.monotonic() < deadline, failure
            await asyncio.sleep(0.02)  # polling the database, not waiting for time to pass


async def _wait_until_draining(probe: Device, timeout: float = 10) -> None:
    """Ping until the server refuses requests as `unavailable` (it took the signal)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await probe.request("ping")
        if reply["type"] == "error":
            assert reply["code"] == "unavailable", reply
            return
        assert reply["type"] == "pong", reply
        assert time.monotonic() < deadline, "the server never started draining"


async def _wait_exit(server: ServerProcess, timeout: float) -> int:
    return await asyncio.to_thread(server.process.wait, timeout)


@database_sync_to_async
def _messages_by_client_msg_id(sender, client_msg_ids) -> dict[str, Message]:
    return {m.client_msg_id: m for m in Message.objects.filter(sender=sender, client_msg_id__in=list(client_msg_ids))}


@database_sync_to_async
def _log(conversation_id) -> tuple[int, list[tuple[int, str, int | None]]]:
    last_seq = Conversation.objects.get(pk=conversation_id).last_seq
    changes = list(
        Change.objects.filter(conversation_id=conversation_id).order_by("seq").values_list("seq", "kind", "message_id")
    )
    return last_seq, changes


class Draining:
    """A server caught draining on SIGTERM, with one request held in flight.

    Users: alice (devices `sender` and `held`) and bob (`listener`, `late`),
    both in two group conversations: `chat` (the pipelined sends) and `side`
    (the held send).
    """

    def __init__(self, make_user, make_device, **server_env):
        self.make_user, self.make_device = make_user, make_device
        self.server_env = {"WS_SHUTDOWN_GRACE_SECONDS": "30", **server_env}
        self.first: ServerProcess | None = None
        self.second: ServerProcess | None = None
        self.lock: RowLock | None = None
        self.pipeline: PipelinedSender | None = None
        self.devices: list[Device] = []

    async def __aenter__(self) -> "Draining":
        new_user = database_sync_to_async(self.make_user)
        new_device = database_sync_to_async(self.make_device)
        self.alice, self.bob = await new_user(), await new_user()
        _, self.sender_token = await new_device(self.alice, "sender")
        _, self.held_token = await new_device(self.alice, "held")
        _, self.listener_token = await new_device(self.bob, "listener")
        _, self.late_token = await new_device(self.bob, "late")
        create = database_sync_to_async(create_conversation)
        self.chat, _ = await create(creator=self.alice, kind="group", member_ids=[self.bob.pk])
        self.side, _ = await create(creator=self.alice, kind="group", member_ids=[self.bob.pk])
        self.lock = RowLock(self.side.pk)
        self.first = await asyncio.to_thread(ServerProcess(**self.server_env).start)
        return self

    async def __aexit__(self, *exc_info) -> None:
        try:
            if self.pipeline is not None:
                await self.pipeline.stop()
        finally:
            await self.lock.release()
            for device in self.devices:
                if device.ws is not None and not device.closed:
                    await device.close()
            for server in (self.first, self.second):
                if server is not None:
                    await asyncio.to_thread(server.stop)

    async def connect(self, server: ServerProcess, token: str, name: str) -> Device:
        device = await connect(server.url, token, name)
        self.devices.append(device)
        return device

    async def start_draining(self) -> None:
        """Connect and sync, pipeline sends, hold one send in flight, SIGTERM, and
        return once the server refuses requests (it is draining)."""
        cursors = {str(self.chat.pk): 1, str(self.side.pk): 1}
        self.sender = await self.connect(self.first, self.sender_token, "sender")
        self.held = await self.connect(self.first, self.held_token, "held")
        self.listener = await self.connect(self.first, self.listener_token, "listener")
        for device in (self.sender, self.held, self.listener):
            assert (await device.request("sync", cursors=cursors))["type"] == "ok"

        self.pipeline = PipelinedSender(self.sender, self.chat.pk)
        self.pipeline.start()
        await asyncio.wait_for(self.pipeline.acked_enough.wait(), 15)

        await self.lock.acquire()
        await self.held.send_raw(
            json.dumps(
                {
                    "type": "send",
                    "ref": "held-1",
                    "conversation_id": self.side.pk,
                    "client_msg_id": "held-1",
                    "body": "held",
                }
            )
        )
        await self.lock.wait_for_waiter()

        self.first.signal(signal.SIGTERM)
        await _wait_until_draining(self.listener)
        await asyncio.wait_for(self.pipeline.refused.wait(), 10)
        # Still running (the held request is in flight) and nobody was closed yet.
        assert self.first.process.poll() is None, self.first.output()
        assert [d.close_code for d in (self.sender, self.held, self.listener)] == [None, None, None]

    async def finish(self) -> dict:
        """Release the held send, wait for every close and the exit; the held reply."""
        await self.lock.release()
        reply = await self.held.wait_for(lambda f: f.get("ref") == "held-1")
        for device in (self.held, self.sender, self.listener):
            await device.wait_closed(timeout=10)
        await _wait_exit(self.first, EXIT_TIMEOUT)
        await self.pipeline.stop()
        return reply


async def test_sigterm_loses_no_acknowledged_send_and_duplicates_none(transactional_db, make_user, make_device):
    async with Draining(make_user, make_device) as run:
        await run.start_draining()
        held_reply = await run.finish()
        alice, chat, pipeline, listener = run.alice, run.chat, run.pipeline, run.listener

        # The request in flight when the signal came was completed and acknowledged.
        assert held_reply["type"] == "ok", held_reply
        assert held_reply["result"]["seq"] == 2 and held_reply["result"]["duplicate"] is False
        assert run.first.process.returncode == 0, run.first.output()

        acked, refused, unanswered = pipeline.by_outcome()
        assert len(acked) >= ACKED_BEFORE_SIGTERM and refused, (len(acked), refused)
        # Every reply is an ok or `unavailable`: nothing else went wrong.
        assert set(pipeline.replies) == set(acked) | set(refused)
        # A connection's requests are handled in order: once one was refused, no later one was acknowledged.
        order = list(pipeline.sent)
        assert max(order.index(c) for c in acked) < min(order.index(c) for c in refused)

        stored = await _messages_by_client_msg_id(alice, pipeline.sent)
        for client_msg_id, result in acked.items():
            message = stored.get(client_msg_id)
            assert message is not None, f"acknowledged {client_msg_id} is not in the database"
            assert (message.pk, message.seq, message.conversation_id) == (result["message_id"], result["seq"], chat.pk)
            assert result["duplicate"] is False and message.body == pipeline.body_of(client_msg_id)
        assert not [c for c in refused if c in stored], "a send refused as unavailable was written"
        held_message = (await _messages_by_client_msg_id(alice, ["held-1"]))["held-1"]
        assert (held_message.pk, held_message.seq) == (held_reply["result"]["message_id"], 2)
        # The acknowledged sends took seqs 2, 3, ... with nothing else in between.
        assert sorted(r["seq"] for r in acked.values()) == list(range(2, 2 + len(acked)))

        # Before the close, the listener got an in-order gapless prefix of each log.
        listened = listener.seqs(chat.pk)
        assert listened == list(range(2, 2 + len(listened)))
        assert listener.seqs(run.side.pk) in ([], [2])
        assert not [f for f in listener.frames if f["type"] == "reset"]

        # A new server: the client retries everything that was not acknowledged
        # (and, to show a retry is harmless, a few that were) with the same ids.
        run.second = await asyncio.to_thread(ServerProcess().start)
        retrier = await run.connect(run.second, run.sender_token, "retrier")
        retried = {}
        for client_msg_id in [*unanswered, *refused, *list(acked)[:3]]:
            reply = await retrier.request(
                "send", conversation_id=chat.pk, client_msg_id=client_msg_id, body=pipeline.body_of(client_msg_id)
            )
            assert reply["type"] == "ok", reply
            retried[client_msg_id] = reply["result"]
        for client_msg_id, result in retried.items():
            before = stored.get(client_msg_id)
            if before is None:
                assert result["duplicate"] is False, (client_msg_id, result)
            else:
                assert result["duplicate"] is True, (client_msg_id, result)
                assert (result["message_id"], result["seq"]) == (before.pk, before.seq)

        # One message per client_msg_id; the log is gapless with one message.created per message.
        final = await _messages_by_client_msg_id(alice, pipeline.sent)
        assert set(final) == set(pipeline.sent)
        last_seq, changes = await _log(chat.pk)
        assert [seq for seq, _, _ in changes] == list(range(1, last_seq + 1))
        created = [message_id for _, kind, message_id in changes if kind == Change.Kind.MESSAGE_CREATED]
        assert sorted(created) == sorted(m.pk for m in final.values())
        assert last_seq == 1 + len(pipeline.sent)

        # The listener resumes on the new server from what it had: the rest, exactly once.
        resumed = await run.connect(run.second, run.listener_token, "resumed")
        side_seqs = listener.seqs(run.side.pk)
        reply = await resumed.request(
            "sync", cursors={str(chat.pk): max(listened, default=1), str(run.side.pk): max(side_seqs, default=1)}
        )
        assert reply["type"] == "ok", reply
        assert reply["result"]["cursors"] == {str(chat.pk): last_seq, str(run.side.pk): 2}
        assert listened + resumed.seqs(chat.pk) == list(range(2, last_seq + 1))
        assert side_seqs + resumed.seqs(run.side.pk) == [2]
        kinds = {seq: kind for seq, kind, _ in changes}
        assert all(f["kind"] == kinds[f["seq"]] for f in listener.events(chat.pk) + resumed.events(chat.pk))


async def test_sigterm_closes_connections_with_going_away(transactional_db, make_user, make_device):
    """Connected devices, and a device connecting while the server drains, are
    closed with GOING_AWAY, so clients know to reconnect elsewhere and sync."""
    async with Draining(make_user, make_device) as run:
        await run.start_draining()
        # The held request keeps the server draining, so this connection
        # certainly arrives during the drain.
        late = await Device(run.first.url, run.late_token, name="late").connect(expect_hello=False)
        run.devices.append(late)
        await late.wait_closed(timeout=10)
        assert late.frames == [], "a connection made while draining was greeted"
        await run.finish()
        observed = {d.name: d.close_code for d in (late, run.sender, run.held, run.listener)}
        server_errors = [line for line in run.first.output().splitlines() if "close code" in line]
        assert observed == dict.fromkeys(observed, close_codes.GOING_AWAY), (observed, server_errors)


async def test_a_send_cut_off_by_the_grace_period_stays_single_and_the_server_still_exits(
    transactional_db, make_user, make_device
):
    """A send still waiting on the database when the grace period ends gets no
    reply and the connection is closed; the process then stops its event loop
    and exits (a write on a thread is waited for; the send's statement on the
    loop's own connection finishes in PostgreSQL without it, committing or
    not). Whether the send committed or not, retrying it on a new server with
    the same client_msg_id leaves exactly one message."""
    alice = await database_sync_to_async(make_user)()
    _, token = await database_sync_to_async(make_device)(alice, "phone")
    chat, _ = await database_sync_to_async(create_conversation)(creator=alice, kind="group")
    lock = RowLock(chat.pk)
    # PYTHONFAULTHANDLER: if the process hangs, SIGABRT makes it print every thread's stack.
    first = await asyncio.to_thread(ServerProcess(WS_SHUTDOWN_GRACE_SECONDS="0.5", PYTHONFAULTHANDLER="1").start)
    second = None
    try:
        phone = await connect(first.url, token, "phone")
        assert (await phone.request("sync", cursors={str(chat.pk): 1}))["type"] == "ok"
        await lock.acquire()
        await phone.send_raw(
            json.dumps(
                {"type": "send", "ref": "cut-1", "conversation_id": chat.pk, "client_msg_id": "cut-1", "body": "b"}
            )
        )
        await lock.wait_for_waiter()
        first.signal(signal.SIGTERM)
        # The grace period ends with the send still waiting: the device is closed unanswered.
        assert await phone.wait_closed(timeout=10) == close_codes.GOING_AWAY
        assert not [f for f in phone.frames if f.get("ref") == "cut-1"], phone.frames
        # Let the write finish only once the server's event loop has stopped.
        await _until_event_loop_stopped(first)
        await lock.release()
        exit_failure = await _exit_or_stacks(first, CUT_OFF_EXIT_TIMEOUT)
        await lock.wait_for_no_statement()  # the cut-off statement has ended, whoever waited for it

        stored = (await _messages_by_client_msg_id(alice, ["cut-1"])).get("cut-1")
        second = await asyncio.to_thread(ServerProcess().start)
        retrier = await connect(second.url, token, "retrier")
        reply = await retrier.request("send", conversation_id=chat.pk, client_msg_id="cut-1", body="b")
        assert reply["type"] == "ok", reply
        if stored is None:
            assert reply["result"]["duplicate"] is False and reply["result"]["seq"] == 2
        else:
            assert reply["result"]["duplicate"] is True
            assert (reply["result"]["message_id"], reply["result"]["seq"]) == (stored.pk, stored.seq) == (stored.pk, 2)
        last_seq, changes = await _log(chat.pk)
        assert (last_seq, [(seq, kind) for seq, kind, _ in changes]) == (
            2,
            [(1, Change.Kind.CONVERSATION_CREATED), (2, Change.Kind.MESSAGE_CREATED)],
        )
        await retrier.close()

        assert exit_failure is None, exit_failure
    finally:
        await lock.release()
        await asyncio.to_thread(first.stop)
        if second is not None:
            await asyncio.to_thread(second.stop)


async def _until_event_loop_stopped(server: ServerProcess, timeout: float = 5) -> None:
    """Until the server no longer listens and its main thread has left the event
    loop (it waits on a lock, joining threads at exit, not in epoll), or the
    process is gone; after `timeout`, go on regardless."""
    wchan = f"/proc/{server.process.pid}/task/{server.process.pid}/wchan"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    settled = 0
    while server.process.poll() is None and settled < 10 and loop.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            listening = True
        except OSError:
            listening = False
        try:
            with open(wchan) as f:
                in_loop = "epoll" in f.read()
        except OSError:
            in_loop = False
        settled = settled + 1 if not listening and not in_loop else 0
        await asyncio.sleep(0.02)  # polling the process, not waiting for time to pass


async def _exit_or_stacks(server: ServerProcess, timeout: float) -> str | None:
    """None once the process has exited; if it is still running after `timeout`,
    its threads' stacks (it must run with PYTHONFAULTHANDLER=1)."""
    try:
        await _wait_exit(server, timeout)
        return None
    except subprocess.TimeoutExpired:
        server.signal(signal.SIGABRT)
        await _wait_exit(server, 10)
        output = server.output()
        start = output.find("Fatal Python error")
        stacks = output[start:] if start >= 0 else output[-3000:]
        return f"still running {timeout}s after the write finished; its threads:\n{stacks[:3000]}"
