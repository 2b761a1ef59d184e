"""ORM writes made outside the services reach connected devices like the services' own.

Plain Django code (tests/gateway/orm_writes.py) creates, edits and deletes
messages, renames a conversation, adds and deletes a membership. Each change
reaches a real device over the WebSocket live, with the right seq and the
log's payload, and catch-up sees it afterwards.

The code runs in one of two places:

* inside the server process (through a test-only URL): live on every
  database, the embedded SQLite and in-memory layer included;
* in the test process, as a shell or a job would: live through Redis (marked
  `redis`); on the embedded defaults such a write reaches the server's
  devices only through its periodic reconciliation with the log, which the
  last test checks.
"""

import asyncio
import json
import urllib.request

import pytest
from channels.db import database_sync_to_async

from conversations.models import Change
from conversations.services import create_conversation, send_message

from . import orm_writes
from .harness import Device, LayerSpy, started_on_first_use

db = database_sync_to_async

ORM_SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.gateway.orm_server_settings",
    # Long, so what arrives within a test's wait arrived live, not by reconciliation.
    "WS_RECONCILE_SECONDS": "60",
}


@pytest.fixture(scope="module")
def _orm_server(django_db_setup):
    with started_on_first_use(**ORM_SERVER_ENV) as orm_server:
        yield orm_server


@pytest.fixture
def orm_server(_orm_server, transactional_db):
    """A server that can run ORM code; the test's data is committed so it sees it.
    Afterwards, wait for the server's last presence writes (as the shared fixture does)."""
    yield _orm_server()
    import time

    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _post(server, name, kwargs) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/test-only/orm/{name}",
        data=json.dumps(kwargs).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


IN_THE_SERVER = "in the server process"
ELSEWHERE = "in another process"


@pytest.fixture(params=[IN_THE_SERVER, pytest.param(ELSEWHERE, marks=pytest.mark.redis)])
def orm(request, orm_server):
    """`await orm("create_message", ...)`: run one of orm_writes' functions, in
    the server process or in this one (then it reaches the server through Redis)."""

    async def run(name, **kwargs):
        if request.param == IN_THE_SERVER:
            return await asyncio.to_thread(_post, orm_server, name, kwargs)
        return await db(orm_writes.WRITES[name])(**kwargs)

    return run


def event_at(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


@db
def log_payloads(conversation_id) -> dict:
    return dict(Change.objects.filter(conversation_id=conversation_id).values_list("seq", "payload"))


@db
def log_kinds(conversation_id) -> list:
    return list(Change.objects.filter(conversation_id=conversation_id).order_by("seq").values_list("seq", "kind"))


async def room(server, account):
    """A group of alice and bob (seq 1), and a synced device of alice's."""
    (alice, [token]), (bob, _) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", title="room", member_ids=[bob.pk])
    phone = await Device(server.url, token, name="phone").connect()
    assert (await phone.request("sync", cursors={str(conversation.pk): 1}))["type"] == "ok"
    return conversation.pk, alice, bob, phone


async def test_messages_created_edited_and_deleted_with_the_orm_reach_a_device(orm_server, account, orm):
    cid, alice, bob, phone = await room(orm_server, account)

    created = await orm("create_message", conversation_id=cid, sender_id=bob.pk, body="from my code")
    assert created["seq"] == 2
    frame = await phone.wait_for(event_at(cid, 2))
    assert frame["kind"] == "message.created"
    assert (frame["payload"]["body"], frame["payload"]["sender"]) == ("from my code", bob.pk)
    assert frame["payload"] == (await log_payloads(cid))[2]  # read now: the delete redacts it

    await orm("edit_message", message_id=created["id"], body="from my code, edited")
    edited = await phone.wait_for(event_at(cid, 3))
    assert (edited["kind"], edited["payload"]["version"], edited["payload"]["edited_by"]) == (
        "message.edited",
        2,
        None,
    )
    assert edited["payload"] == (await log_payloads(cid))[3]

    await orm("delete_message", message_id=created["id"])
    deleted = await phone.wait_for(event_at(cid, 4))
    assert deleted["kind"] == "message.deleted"
    assert (deleted["payload"]["body"], deleted["payload"]["deleted"], deleted["payload"]["deleted_by"]) == (
        "",
        True,
        None,
    )
    assert phone.seqs(cid) == [2, 3, 4]

    # Catch-up after the fact: a device that was away reads the same changes from the log.
    laptop = await Device(orm_server.url, (await db(issue_token)(alice)), name="laptop").connect()
    assert (await laptop.request("sync", cursors={str(cid): 1}))["type"] == "ok"
    assert laptop.seqs(cid) == [2, 3, 4]
    logged = await log_payloads(cid)
    assert [f["payload"] for f in laptop.events(cid)] == [logged[2], logged[3], logged[4]]
    assert logged[2]["body"] == "" and logged[2]["redacted"] is True  # the delete redacted it
    for device in (phone, laptop):
        await device.close()


def issue_token(user) -> str:
    from devices.services import issue_device

    return issue_device(user=user, name="laptop").token


async def test_a_conversation_renamed_with_the_orm_reaches_a_device(orm_server, account, orm):
    cid, _, _, phone = await room(orm_server, account)
    await orm("rename_conversation", conversation_id=cid, title="renamed by a job")
    frame = await phone.wait_for(event_at(cid, 2))
    assert (frame["kind"], frame["payload"]) == (
        "conversation.renamed",
        {"title": "renamed by a job", "previous_title": "room", "renamed_by": None},
    )
    await phone.close()


async def test_a_membership_created_and_deleted_with_the_orm_reaches_everyone(orm_server, account, orm):
    cid, alice, bob, phone = await room(orm_server, account)
    carol, [carol_token] = await account()
    tablet = await Device(orm_server.url, carol_token, name="tablet").connect()
    assert (await tablet.request("sync", cursors={}))["type"] == "ok"  # in no conversation yet

    assert (await orm("add_member", conversation_id=cid, user_id=carol.pk))["joined_seq"] == 2
    for device in (phone, tablet):
        added = await device.wait_for(event_at(cid, 2))
        assert (added["kind"], added["payload"]["user"]["id"], added["payload"]["added_by"]) == (
            "member.added",
            carol.pk,
            None,
        )
        members = [m["user"]["id"] for m in added["payload"]["conversation"]["members"]]
        assert members == [alice.pk, bob.pk, carol.pk]

    # Carol's device follows the conversation from there on.
    await orm("create_message", conversation_id=cid, sender_id=alice.pk, body="welcome, carol")
    for device in (phone, tablet):
        assert (await device.wait_for(event_at(cid, 3)))["payload"]["body"] == "welcome, carol"

    await orm("delete_member", conversation_id=cid, user_id=carol.pk)
    for device in (phone, tablet):
        removed = await device.wait_for(event_at(cid, 4))
        assert (removed["kind"], removed["payload"]["user"]["id"], removed["payload"]["removed_by"]) == (
            "member.removed",
            carol.pk,
            None,
        )

    # And stops following it: the next message reaches alice only.
    await orm("create_message", conversation_id=cid, sender_id=alice.pk, body="carol is gone")
    await phone.wait_for(event_at(cid, 5))
    assert tablet.seqs(cid) == [2, 3, 4]
    assert phone.seqs(cid) == [2, 3, 4, 5]
    for device in (phone, tablet):
        await device.close()


async def test_a_rolled_back_orm_write_publishes_nothing(orm_server, account, orm):
    cid, alice, _, phone = await room(orm_server, account)
    await orm("create_message_and_roll_back", conversation_id=cid, sender_id=alice.pk, body="never")
    await orm("create_message", conversation_id=cid, sender_id=alice.pk, body="committed")
    frame = await phone.wait_for(event_at(cid, 2))
    assert frame["payload"]["body"] == "committed"
    assert all("never" not in json.dumps(f) for f in phone.frames)
    assert await log_kinds(cid) == [(1, "conversation.created"), (2, "message.created")]
    await phone.close()


async def test_service_writes_and_orm_writes_arrive_once_each(orm_server, account, orm):
    cid, alice, bob, phone = await room(orm_server, account)
    sent = await phone.request("send", conversation_id=cid, client_msg_id="ws-1", body="by the service")
    assert sent["result"]["seq"] == 2
    await orm("create_message", conversation_id=cid, sender_id=bob.pk, body="by my code")
    sent = await phone.request("send", conversation_id=cid, client_msg_id="ws-2", body="by the service again")
    await phone.received(event_at(cid, 4))
    await asyncio.sleep(1.5)  # a duplicate would be dropped by the stream; the log shows there is none
    assert phone.seqs(cid) == [2, 3, 4]
    kinds = [kind for _, kind in await log_kinds(cid)]
    assert kinds == ["conversation.created", "message.created", "message.created", "message.created"]
    await phone.close()


@pytest.mark.redis
async def test_a_service_write_is_published_exactly_once(orm_server, account, orm):
    cid, alice, bob, phone = await room(orm_server, account)
    async with LayerSpy(cid) as spy:
        await db(send_message)(sender=alice, conversation_id=cid, client_msg_id="svc-1", body="service")
        await orm("create_message", conversation_id=cid, sender_id=bob.pk, body="orm")
        await db(send_message)(sender=alice, conversation_id=cid, client_msg_id="svc-2", body="service")
        await spy.until_seq(4)
        await spy.drain(quiet=0.7)
    assert spy.seqs() == [2, 3, 4]
    await phone.wait_for(event_at(cid, 4))
    assert phone.seqs(cid) == [2, 3, 4]
    await phone.close()


async def test_an_orm_write_from_another_process_reaches_followers_at_least_by_reconciliation(server, account):
    """On the embedded defaults the test process's in-memory layer reaches no
    server: the write is in the log, and the server's reconciliation (every
    WS_RECONCILE_SECONDS: 0.5 s on the shared test server, 5 s by default)
    delivers it. With Redis it is simply live."""
    cid, _, bob, phone = await room(server, account)
    await db(orm_writes.create_message)(conversation_id=cid, sender_id=bob.pk, body="from the shell")
    frame = await phone.wait_for(event_at(cid, 2), timeout=5)
    assert frame["payload"]["body"] == "from the shell"
    await phone.close()
