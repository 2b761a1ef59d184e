"""The gateway's send on PostgreSQL: the statement awaited on the event loop's
own connections (core/loop_db.py), stored, logged and published exactly as the
ORM's send does, in seq order, and published even when its caller is gone."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.db import IntegrityError, connection
from prometheus_client import REGISTRY

import core.publish
from conversations.models import Change, Message
from conversations.payloads import message_payload
from conversations.services import create_conversation, send_message, send_message_async
from core import loop_db
from core.errors import ClientMsgIdConflict, InvalidInput, NotFound
from core.events import BATCH_KIND, conversation_group, dumps

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chat(make_user):
    alice, bob, outsider = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    return conversation, alice, bob, outsider


@pytest.fixture
def published(monkeypatch):
    """Every event the loop hands to the layer, as (group, seq, payload), in the
    order handed over; `published.get()` awaits the next."""
    handed: asyncio.Queue = asyncio.Queue()

    async def record(messages, what):
        for group, message in messages:
            for event in message["events"] if message["kind"] == BATCH_KIND else [message]:
                handed.put_nowait((group, event["seq"], json.loads(event["text"])["payload"]))

    monkeypatch.setattr(core.publish, "_send_to_groups", record)
    return handed


async def next_published(published, group):
    while True:
        found_group, seq, payload = await asyncio.wait_for(published.get(), 10)
        if found_group == group:
            return seq, payload


def send_on_loop(conversation, sender, client_msg_id="c1", body="hello", **extra):
    return send_message_async(
        sender=sender, conversation_id=conversation.pk, client_msg_id=client_msg_id, body=body, **extra
    )


def as_json(payload):
    return json.loads(dumps(payload))


@database_sync_to_async
def stored(message_id):
    return Message.objects.get(pk=message_id), Change.objects.get(message_id=message_id, kind="message.created")


async def test_a_send_on_the_loop_is_stored_logged_and_published_as_the_orm_send(chat, published):
    conversation, alice, bob, _ = chat
    first = await database_sync_to_async(send_message)(
        sender=bob, conversation_id=conversation.pk, client_msg_id="orm", body="first"
    )
    result = await send_on_loop(conversation, alice, body="héllo ✓", reply_to_id=first.message.pk)

    assert result.created and result.seq == first.message.seq + 1
    message, change = await stored(result.message_id)
    assert (message.seq, message.client_msg_id, message.body) == (result.seq, "c1", "héllo ✓")
    assert message.reply_to_id == first.message.pk
    assert (change.seq, change.actor_id, change.payload) == (message.seq, alice.pk, as_json(message_payload(message)))
    group = conversation_group(conversation.pk)
    assert await next_published(published, group) == (first.message.seq, as_json(message_payload(first.message)))
    assert await next_published(published, group) == (message.seq, change.payload)
    assert loop_db._of_running_loop().all, "the statement ran on a connection of the loop"


async def test_concurrent_sends_on_the_loop_are_published_in_seq_order(chat, published):
    conversation, alice, bob, _ = chat
    results = await asyncio.gather(
        *(send_on_loop(conversation, (alice, bob)[i % 2], client_msg_id=f"m{i}", body=str(i)) for i in range(30))
    )
    seqs = sorted(result.seq for result in results)
    assert seqs == list(range(seqs[0], seqs[0] + 30))
    group = conversation_group(conversation.pk)
    assert [(await next_published(published, group))[0] for _ in seqs] == seqs


async def test_refused_sends_store_and_publish_nothing(chat, published):
    conversation, alice, _, outsider = chat
    with pytest.raises(NotFound):
        await send_on_loop(conversation, outsider, client_msg_id="outsider")
    with pytest.raises(NotFound):
        await send_message_async(sender=alice, conversation_id=10**9, client_msg_id="nowhere", body="x")
    with pytest.raises(InvalidInput) as refused:
        await send_on_loop(conversation, alice, client_msg_id="bad-reply", reply_to_id=10**9)
    assert refused.value.field == "reply_to"

    after = await send_on_loop(conversation, alice, client_msg_id="after")
    assert after.seq == 2, "no refusal took a seq"
    message, _ = await stored(after.message_id)
    assert await next_published(published, conversation_group(conversation.pk)) == (
        2,
        as_json(message_payload(message)),
    ), "nothing was published before it"
    count = await database_sync_to_async(Message.objects.filter(conversation=conversation).count)()
    assert count == 1
    assert core.publish.conversation_lines.pending() == 0


async def test_a_retried_send_on_the_loop_returns_the_first(chat, make_user):
    conversation, alice, bob, _ = chat
    first = await send_on_loop(conversation, alice, client_msg_id="same")
    again = await send_on_loop(conversation, alice, client_msg_id="same", body="changed")
    assert again == first._replace(created=False)
    other, _ = await database_sync_to_async(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    with pytest.raises(ClientMsgIdConflict):
        await send_on_loop(other, alice, client_msg_id="same")
    assert await database_sync_to_async(Message.objects.filter(sender=alice).count)() == 1


async def test_a_send_whose_caller_is_cancelled_still_commits_and_is_published(chat, published):
    conversation, alice, _, _ = chat
    task = asyncio.ensure_future(send_on_loop(conversation, alice, client_msg_id="gone"))
    await asyncio.sleep(0)  # let it start: it has its place in line and waits for its connection
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    seq, payload = await next_published(published, conversation_group(conversation.pk))
    assert (seq, payload["client_msg_id"]) == (2, "gone")
    assert await database_sync_to_async(Message.objects.filter(client_msg_id="gone").exists)()


async def test_sends_use_the_write_threads_when_loop_connections_are_off(chat, settings):
    settings.DB_LOOP_CONNECTIONS = 0
    conversation, alice, _, _ = chat
    result = await send_on_loop(conversation, alice)
    assert result.created and result.seq == 2
    assert asyncio.get_running_loop() not in loop_db._by_loop


async def test_a_connection_the_server_ended_is_replaced_before_a_send(chat):
    conversation, alice, _, _ = chat
    await send_on_loop(conversation, alice, client_msg_id="before")
    (conn,) = loop_db._of_running_loop().idle
    backend = conn.info.backend_pid
    await database_sync_to_async(_terminate)(backend)
    for _ in range(500):  # until its socket has the termination notice (at most 5 s)
        if loop_db.has_input(conn):
            break
        await asyncio.sleep(0.01)

    lost = metric("realtime_db_loop_connections_lost_total")
    result = await send_on_loop(conversation, alice, client_msg_id="after")
    assert result.created and result.seq == 3
    assert conn.closed
    assert metric("realtime_db_loop_connections_lost_total") == lost + 1
    (replacement,) = loop_db._of_running_loop().idle
    assert replacement.info.backend_pid != backend


def _terminate(backend_pid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        assert cursor.fetchone() == (True,)


def metric(name):
    return REGISTRY.get_sample_value(name) or 0


async def test_loop_connections_are_bounded_and_waited_for():
    waits, errors = metric("realtime_db_loop_waits_total"), metric("realtime_db_loop_errors_total")
    connections = loop_db.LoopConnections(size=2, timeout=0.2)
    first, second = await connections.take(), await connections.take()
    with pytest.raises(loop_db.NoConnection):
        await connections.take()
    assert (metric("realtime_db_loop_waits_total"), metric("realtime_db_loop_errors_total")) == (waits + 1, errors + 1)
    waiting = asyncio.ensure_future(connections.take())
    await asyncio.sleep(0)
    connections.give_back(first)
    assert await waiting is first, "a connection given back goes to the next in line"
    held = metric("realtime_db_loop_connections")
    connections.close()
    assert first.closed and second.closed
    assert metric("realtime_db_loop_connections") == held - 2


async def test_errors_come_out_as_djangos_and_the_connection_stays_usable():
    async with loop_db.connection() as conn:
        await conn.execute("CREATE TEMPORARY TABLE once (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO once VALUES (1)")
    with pytest.raises(IntegrityError):
        async with loop_db.connection() as conn:
            await conn.execute("INSERT INTO once VALUES (1)")
    async with loop_db.connection() as again:
        assert again is conn, "the same connection, back in use"
        cursor = await again.execute("SELECT count(*) FROM once")
        assert await cursor.fetchone() == (1,)


async def test_close_all_closes_every_loops_connections():
    async with loop_db.connection() as conn:
        backend = conn.info.backend_pid
    loop_db.close_all()
    assert conn.closed
    assert await database_sync_to_async(_backend_gone)(backend)


def _backend_gone(backend_pid, attempts=500):
    """Whether PostgreSQL's backend ended within 5 s (it notices the closed socket at once)."""
    import time

    for _ in range(attempts):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend_pid])
            if cursor.fetchone() is None:
                return True
        time.sleep(0.01)
    return False
