"""Graceful shutdown of a real server process on SIGTERM.

One device pipelines `send` requests (each with a new client_msg_id) while
another device holds a request in flight (its `send` waits on a row lock the
test holds), so the server is caught draining: it must stop taking requests,
refuse new connections with GOING_AWAY, let the request in flight commit and
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
import time

import psycopg
import pytest
import websockets
from channels.db import database_sync_to_async

from conversations.models import Change, Conversation, Message
from conversations.services import create_conversation
from realtime_sync.gateway import close_codes

from .harness import Closed, Device, ServerProcess, database_url

ACKED_BEFORE_SIGTERM = 10
PIPELINE_WINDOW = 5
MAX_SENDS = 600
SEND_PACE = 0.005  # seconds between pipelined sends: pacing only
EXIT_TIMEOUT = 20


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
            except websockets.ConnectionClosed:
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
        async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as probe:
            deadline = time.monotonic() + timeout
            while True:
                cursor = await probe.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if (await cursor.fetchone())[0] > 0:
                    return
                assert time.monotonic() < deadline, "the server's write never reached the locked row"
                await asyncio.sleep(0.02)  # polling the database, not waiting for time to pass

    async def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.commit()
            await self.conn.close()


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


async def test_sigterm_drains_closes_with_going_away_and_loses_no_acknowledged_send(
    transactional_db, make_user, make_device
):
    alice = await database_sync_to_async(make_user)()
    bob = await database_sync_to_async(make_user)()
    _, sender_token = await database_sync_to_async(make_device)(alice, "sender")
    _, held_token = await database_sync_to_async(make_device)(alice, "held")
    _, listener_token = await database_sync_to_async(make_device)(bob, "listener")
    _, late_token = await database_sync_to_async(make_device)(bob, "late")
    chat, _ = await database_sync_to_async(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    side, _ = await database_sync_to_async(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cursors = {str(chat.pk): 1, str(side.pk): 1}

    first = await asyncio.to_thread(ServerProcess(WS_SHUTDOWN_GRACE_SECONDS="30").start)
    second = None
    lock = RowLock(side.pk)
    pipeline = None
    try:
        sender = await Device(first.url, sender_token, name="sender").connect()
        held = await Device(first.url, held_token, name="held").connect()
        listener = await Device(first.url, listener_token, name="listener").connect()
        for device in (sender, held, listener):
            assert (await device.request("sync", cursors=cursors))["type"] == "ok"

        pipeline = PipelinedSender(sender, chat.pk)
        pipeline.start()
        await asyncio.wait_for(pipeline.acked_enough.wait(), 15)

        # A request the server must finish before closing anything: a send that
        # waits on the row lock this test holds.
        await lock.acquire()
        await held.send_raw(
            json.dumps(
                {"type": "send", "ref": "held-1", "conversation_id": side.pk, "client_msg_id": "held-1", "body": "late"}
            )
        )
        await lock.wait_for_waiter()

        first.signal(signal.SIGTERM)
        await _wait_until_draining(listener)
        await asyncio.wait_for(pipeline.refused.wait(), 10)

        # Draining, with a request in flight: still running, nobody closed yet,
        # and a new connection is turned away with GOING_AWAY, before any hello.
        assert first.process.poll() is None, first.output()
        assert (sender.close_code, held.close_code, listener.close_code) == (None, None, None)
        late = await Device(first.url, late_token, name="late").connect(expect_hello=False)
        print("LATE", await late.wait_closed(timeout=10), late.frames)
        assert late.frames == []

        # The request in flight completes and is acknowledged before the close.
        await lock.release()
        held_reply = await held.wait_for(lambda f: f.get("ref") == "held-1")
        assert held_reply["type"] == "ok", held_reply
        assert held_reply["result"]["seq"] == 2 and held_reply["result"]["duplicate"] is False
        t0=time.monotonic()
        for device in (held, sender, listener):
            print("CLOSE", device.name, await device.wait_closed(timeout=10), time.monotonic()-t0)
        returncode = await _wait_exit(first, EXIT_TIMEOUT)
        print("EXIT", returncode, time.monotonic()-t0)
        print(first.output()[-3000:])
        assert returncode is not None
        await pipeline.stop()

        acked, refused, unanswered = pipeline.by_outcome()
        assert len(acked) >= ACKED_BEFORE_SIGTERM and refused, (len(acked), refused)
        # Every reply is an ok or `unavailable`: nothing else went wrong.
        assert set(pipeline.replies) == set(acked) | set(refused)
        # Requests are handled in order, so once the server refused one it acknowledged no later one.
        order = list(pipeline.sent)
        assert max(order.index(c) for c in acked) < min(order.index(c) for c in refused)

        stored = await _messages_by_client_msg_id(alice, pipeline.sent)
        for client_msg_id, result in acked.items():
            message = stored.get(client_msg_id)
            assert message is not None, f"acknowledged {client_msg_id} is not in the database"
            assert (message.pk, message.seq, message.conversation_id) == (
                result["message_id"],
                result["seq"],
                chat.pk,
            )
            assert result["duplicate"] is False and message.body == pipeline.body_of(client_msg_id)
        assert not [c for c in refused if c in stored], "a send refused as unavailable was written"
        held_message = (await _messages_by_client_msg_id(alice, ["held-1"]))["held-1"]
        assert (held_message.pk, held_message.seq) == (held_reply["result"]["message_id"], 2)

        # The acknowledged sends took seqs 2, 3, ... with nothing else in between.
        assert sorted(r["seq"] for r in acked.values()) == list(range(2, 2 + len(acked)))

        # The listener got, before the close, an in-order gapless prefix of the log.
        listened = listener.seqs(chat.pk)
        assert listened == list(range(2, 2 + len(listened)))
        assert listener.seqs(side.pk) in ([], [2])
        assert not [f for f in listener.frames if f["type"] == "reset"]

        # A new server: the client retries everything that was not acknowledged
        # (and, to be sure retries are harmless, a few that were) with the same ids.
        second = await asyncio.to_thread(ServerProcess().start)
        retrier = await Device(second.url, sender_token, name="retrier").connect()
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

        # Exactly one message per client_msg_id, and the log is gapless with one
        # message.created per message.
        final = await _messages_by_client_msg_id(alice, pipeline.sent)
        assert set(final) == set(pipeline.sent)
        last_seq, changes = await _log(chat.pk)
        assert [seq for seq, _, _ in changes] == list(range(1, last_seq + 1))
        created = [message_id for _, kind, message_id in changes if kind == Change.Kind.MESSAGE_CREATED]
        assert sorted(created) == sorted(m.pk for m in final.values())
        assert last_seq == 1 + len(pipeline.sent)

        # The listener resumes on the new server from what it had: the rest, exactly once.
        resumed = await Device(second.url, listener_token, name="resumed").connect()
        reply = await resumed.request(
            "sync", cursors={str(chat.pk): max(listened, default=1), str(side.pk): max(listener.seqs(side.pk), default=1)}
        )
        assert reply["type"] == "ok", reply
        assert reply["result"]["cursors"] == {str(chat.pk): last_seq, str(side.pk): 2}
        assert listened + resumed.seqs(chat.pk) == list(range(2, last_seq + 1))
        assert listener.seqs(side.pk) + resumed.seqs(side.pk) == [2]
        kinds = {seq: kind for seq, kind, _ in changes}
        assert all(f["kind"] == kinds[f["seq"]] for f in listener.events(chat.pk) + resumed.events(chat.pk))
        await retrier.close()
        await resumed.close()
    finally:
        if pipeline is not None:
            await pipeline.stop()
        await lock.release()
        await asyncio.to_thread(first.stop)
        if second is not None:
            await asyncio.to_thread(second.stop)
