"""A PostgreSQL restart loses nothing once the plain-SQL listener is back.

This test restarts PostgreSQL, so it has a cluster of its own: a private one
(tests/private_postgres.py), started on another port for the test and removed
after it. Restarting the shared server would break the connections of every
other test, run and developer using it at the time. The server process, the
`listen_changes` process and the test's plain-SQL writes all use the private
cluster, which a separate Python process migrates and gives its users, devices
and conversation through the project's own services. Redis is the test Redis,
as in test_sql_writes.py.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import psycopg
import pytest

from tests.private_postgres import PrivatePostgres, private_postgres

from .conftest import SHARED_SERVER_ENV
from .harness import ROOT, Device, ServerProcess
from .test_sql_writes import WAIT, ListenerProcess, is_event

# Redis carries the listener's publications to the server. Like the other tests of PostgreSQL
# itself, it runs where PostgreSQL is configured; it needs its server programs too, for the cluster.
pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Run by a separate Python process on the private database: the schema, then the
# test's data through the project's own services, printed as JSON on the last line.
MIGRATE_AND_CREATE = """
import json

import django

django.setup()

from django.contrib.auth import get_user_model
from django.core.management import call_command

call_command("migrate", verbosity=0)

from conversations.services import create_conversation
from devices.services import issue_device

User = get_user_model()
alice = User.objects.create_user(username="alice", password="correct horse battery staple")
bob = User.objects.create_user(username="bob", password="correct horse battery staple")
conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
print(json.dumps({
    "conversation_id": conversation.pk,
    "alice_id": alice.pk,
    "bob_id": bob.pk,
    "phone_token": issue_device(user=alice, name="phone").token,
    "laptop_token": issue_device(user=alice, name="laptop").token,
}))
"""


@dataclass(frozen=True)
class Room:
    """A group conversation of alice and bob (seq 1: its creation), and two devices of alice."""

    conversation_id: int
    alice_id: int
    bob_id: int
    phone_token: str
    laptop_token: str


@pytest.fixture
def cluster():
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def room(cluster) -> Room:
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},  # nothing to publish to anyone yet
        "DJANGO_SETTINGS_MODULE": "realtime_sync.test_settings",
        "DATABASE_URL": cluster.url,
    }
    result = subprocess.run(
        [sys.executable, "-c", MIGRATE_AND_CREATE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Room(**json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture
def server(cluster, room):
    """A server process on the private cluster, with the shared server's limits."""
    server = ServerProcess(**SHARED_SERVER_ENV, DATABASE_URL=cluster.url).start()
    yield server
    server.stop()


@pytest.fixture
async def listener(cluster, server, tmp_path):
    process = ListenerProcess(tmp_path / "listener.log", database=cluster.url).start()
    await process.logged("listening on realtime_changes")
    yield process
    status = process.stop()
    assert status == 0, process.output()  # SIGTERM is a clean exit
    assert "listener stopped" in process.output()


def sql_insert(cluster: PrivatePostgres, conversation_id: int, sender_id: int, body: str) -> int:
    """An outside writer's INSERT, committed at once, on a connection of its own; the message's id."""
    with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(
            "INSERT INTO conversations_message (conversation_id, sender_id, body) VALUES (%s, %s, %s) RETURNING id",
            [conversation_id, sender_id, body],
        ).fetchone()[0]


def heal_server_pool(server, token: str, timeout: float = WAIT) -> None:
    """Until the server answers database-backed requests again.

    Its pool still holds connections the restart broke; each is discarded after
    the one request it fails. Ask until more requests in a row succeed than the
    pool can hold.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1/conversations", headers={"Authorization": f"Bearer {token}"}
    )
    deadline, successes = time.monotonic() + timeout, 0
    while successes < 12:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                successes = successes + 1 if response.status == 200 else 0
        except urllib.error.HTTPError:
            successes = 0
        if time.monotonic() > deadline:
            raise AssertionError("the server did not recover from the PostgreSQL restart")


async def test_a_postgresql_restart_loses_nothing(cluster, room, server, listener):
    cid, bob = room.conversation_id, room.bob_id
    phone = await Device(server.url, room.phone_token, name="phone").connect()
    assert (await phone.request("sync", cursors={str(cid): 1}))["type"] == "ok"
    await asyncio.to_thread(sql_insert, cluster, cid, bob, "before the restart")
    await phone.wait_for(is_event(cid, 2))

    # Pause the listener so the next insert commits while it is certainly not listening.
    listener.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.to_thread(cluster.restart)  # returns once PostgreSQL accepts connections again
        await asyncio.to_thread(sql_insert, cluster, cid, bob, "while the listener was away")
    finally:
        listener.process.send_signal(signal.SIGCONT)

    await listener.logged("listening on realtime_changes", times=2)  # reconnected and caught up
    await asyncio.to_thread(sql_insert, cluster, cid, bob, "after it is back")
    await phone.wait_for(is_event(cid, 4), timeout=WAIT)
    assert phone.seqs(cid) == [2, 3, 4]
    bodies = [f["payload"]["body"] for f in phone.events(cid)]
    assert bodies == ["before the restart", "while the listener was away", "after it is back"]
    assert "connection lost" in listener.output()

    # The server recovers too: once its broken pooled connections are weeded out, a
    # device that connects now catches up on the whole log from PostgreSQL.
    await asyncio.to_thread(heal_server_pool, server, room.laptop_token)
    laptop = await Device(server.url, room.laptop_token, name="laptop").connect()
    assert (await laptop.request("sync", cursors={str(cid): 0}))["type"] == "ok"
    assert laptop.seqs(cid) == [1, 2, 3, 4]
    for device in (phone, laptop):
        await device.close()
