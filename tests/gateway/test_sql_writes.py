"""Messages written with plain SQL reach connected devices live.

PostgreSQL triggers log an outside INSERT, UPDATE or DELETE of a message like
the app logs its own writes and NOTIFY realtime_changes on commit; the
`listen_changes` process (run here as in production, against the test
database and Redis) publishes them. A device sees the same frames, in the same
seq sequence, as for the app's writes; and the app's writes are published once.

That a PostgreSQL restart loses nothing is tested in test_postgresql_restart.py,
on a private PostgreSQL cluster: restarting the shared one would disturb
everything else using it.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from conversations.models import Change, Message
from conversations.payloads import message_payload
from conversations.services import create_conversation, send_message
from core.events import dumps

from .harness import ROOT, Device, LayerSpy, database_url

# PostgreSQL's triggers and NOTIFY; the listener process publishes to the server through Redis.
pytestmark = [pytest.mark.postgres, pytest.mark.redis]

db = database_sync_to_async
WAIT = 30.0  # generous: a listener reconnecting after a PostgreSQL restart waits out its backoff too


class ListenerProcess:
    """`python manage.py listen_changes` on the test database (or `database`, a
    DATABASE_URL) and the test Redis."""

    def __init__(self, log_path: Path, database: str | None = None):
        self.log_path = log_path
        self.database = database
        self.process: subprocess.Popen | None = None

    def start(self) -> "ListenerProcess":
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "realtime_sync.test_settings",
            "DATABASE_URL": self.database or database_url(),
            "REDIS_URL": settings.REDIS_URL,
        }
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop(); outlives this call)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "listen_changes"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def output(self) -> str:
        return self.log_path.read_text()

    async def logged(self, text: str, times: int = 1, timeout: float = WAIT) -> None:
        """Until `text` has appeared `times` times in the listener's output."""
        deadline = time.monotonic() + timeout
        while self.output().count(text) < times:
            if self.process.poll() is not None:
                raise AssertionError(f"listener exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"listener never logged {text!r} x{times}:\n{self.output()}")
            await asyncio.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; the exit status."""
        self.process.send_signal(signal.SIGCONT)  # in case a test paused it
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self.log.close()


@pytest.fixture
async def listener(server, tmp_path):
    process = ListenerProcess(tmp_path / "listener.log").start()
    await process.logged("listening on realtime_changes")
    yield process
    status = process.stop()
    assert status == 0, process.output()  # SIGTERM is a clean exit
    assert "listener stopped" in process.output()


def is_event(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


def as_logged(payload: dict) -> dict:
    """A payload as the app logs and sends it (DjangoJSONEncoder, then JSON)."""
    return json.loads(dumps(payload))


@db
def logged_payload(conversation_id, seq) -> dict:
    return Change.objects.get(conversation_id=conversation_id, seq=seq).payload


@db
def sql(statement, params=()):
    """One statement from an outside writer (committed at once); the first column of its row."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()[0] if cursor.description else None


async def sql_insert(conversation_id, sender_id, body) -> int:
    return await sql(
        "INSERT INTO conversations_message (conversation_id, sender_id, body) VALUES (%s, %s, %s) RETURNING id",
        [conversation_id, sender_id, body],
    )


async def room(server, account):
    """A conversation (seq 1) and a synced device of its creator."""
    (alice, [token]), (bob, _) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    phone = await Device(server.url, token, name="phone").connect()
    assert (await phone.request("sync", cursors={str(conversation.pk): 1}))["type"] == "ok"
    return conversation.pk, alice, bob, phone


async def test_plain_sql_insert_edit_and_delete_reach_a_device(server, account, listener):
    cid, alice, bob, phone = await room(server, account)
    await db(send_message)(sender=alice, conversation_id=cid, client_msg_id="app-1", body="from the app")
    app_created = await phone.wait_for(is_event(cid, 2))

    message_id = await sql_insert(cid, bob.pk, "from psql")
    created = await phone.wait_for(is_event(cid, 3))
    assert created["payload"] == await logged_payload(cid, 3)  # read now: the delete redacts it
    await sql("UPDATE conversations_message SET body = 'from psql, edited' WHERE id = %s", [message_id])
    edited = await phone.wait_for(is_event(cid, 4))
    assert edited["payload"] == await logged_payload(cid, 4)
    await sql("DELETE FROM conversations_message WHERE id = %s", [message_id])
    deleted = await phone.wait_for(is_event(cid, 5))
    assert deleted["payload"] == await logged_payload(cid, 5)

    assert phone.seqs(cid) == [2, 3, 4, 5]
    kinds = [frame["kind"] for frame in (created, edited, deleted)]
    assert kinds == ["message.created", "message.edited", "message.deleted"]
    # Indistinguishable from the app's: same frame, same payload fields, the log's payloads.
    assert created.keys() == app_created.keys() and created["payload"].keys() == app_created["payload"].keys()
    assert created["payload"]["body"] == "from psql" and created["payload"]["sender"] == bob.pk
    assert (edited["payload"]["body"], edited["payload"]["version"], edited["payload"]["edited_by"]) == (
        "from psql, edited",
        2,
        None,
    )
    assert (deleted["payload"]["body"], deleted["payload"]["deleted"], deleted["payload"]["version"]) == ("", True, 3)
    tombstone = await db(Message.objects.get)(pk=message_id)
    assert deleted["payload"] == {**as_logged(message_payload(tombstone)), "deleted_by": None}
    await phone.close()


async def test_an_app_write_is_published_once(server, account, listener):
    cid, alice, bob, phone = await room(server, account)
    async with LayerSpy(cid) as spy:
        await db(send_message)(sender=alice, conversation_id=cid, client_msg_id="app-1", body="app")
        await sql_insert(cid, bob.pk, "sql")
        # NOTIFYs arrive in commit order: had the listener published seq 2 too, it would be here first.
        await spy.until_seq(3)
        await phone.wait_for(is_event(cid, 3))
    assert spy.seqs() == [2, 3]
    assert phone.seqs(cid) == [2, 3]
    origins = await db(lambda: list(Change.objects.filter(conversation_id=cid).values_list("seq", "origin")))()
    assert origins == [(1, "app"), (2, "app"), (3, "sql")]
    await phone.close()
