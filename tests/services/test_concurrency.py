"""Seqs under concurrent writers, idempotency under concurrent retries, and
publishing only what commits. These need PostgreSQL's row locks (and Redis for
the publish test): SQLite serializes all writers and would prove nothing."""

import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from conversations.changelog import lock_conversation
from conversations.models import Change, Membership, Message
from conversations.services import create_conversation, send_message
from core.errors import NotFound
from core.events import conversation_group
from delivery.models import ReceiptCursor
from delivery.services import mark_read
from tests.threads import run_in_threads

THREADS = 12


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_get_gapless_unique_seqs(make_user):
    users = [make_user() for _ in range(THREADS)]
    conversation, _ = create_conversation(creator=users[0], kind="group", member_ids=[u.pk for u in users])
    per_thread = 8

    def send_many(i):
        return [
            send_message(
                sender=users[i], conversation_id=conversation.pk, client_msg_id=f"{i}-{n}", body=f"{i}-{n}"
            ).message.seq
            for n in range(per_thread)
        ]

    seqs = sorted(seq for batch in run_in_threads(THREADS, send_many) for seq in batch)
    total = THREADS * per_thread
    assert seqs == list(range(2, total + 2))
    assert list(Change.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True)) == list(
        range(1, total + 2)
    )
    conversation.refresh_from_db()
    assert conversation.last_seq == total + 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_send_outside_a_transaction_is_one_statement(make_user):
    """The conversation's row lock is held inside PostgreSQL only: the send's
    lock, checks, seq, message, log entry and commit are one round trip."""
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    with CaptureQueriesContext(connection) as queries:
        result = send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="one", body="x")
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert not connection.in_atomic_block
    assert Change.objects.get(conversation=conversation, seq=2).message_id == result.message.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_send_store_one_message(make_user):
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])

    def send_same(_):
        return send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="retry", body="once")

    results = run_in_threads(THREADS, send_same)
    assert len({r.message.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Message.objects.filter(sender=alice, client_msg_id="retry").count() == 1
    assert Change.objects.filter(conversation=conversation, kind="message.created").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reads_never_move_the_cursor_back(make_user):
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    for i in range(THREADS):
        send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"m{i}", body="x")

    run_in_threads(THREADS, lambda i: mark_read(user=bob, conversation_id=conversation.pk, seq=i + 2))
    assert ReceiptCursor.objects.get(user=bob, conversation=conversation).read_seq == THREADS + 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_a_rolled_back_write_publishes_nothing(make_user):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    conversation, _ = await database_sync_to_async(create_conversation)(
        creator=alice, kind="group", member_ids=[bob.pk]
    )
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(conversation_group(conversation.pk), channel)

    def send_then_fail():
        with transaction.atomic():
            send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="lost", body="rolled back")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(send_then_fail)()
    await database_sync_to_async(send_message)(
        sender=alice, conversation_id=conversation.pk, client_msg_id="kept", body="kept"
    )

    # The layer delivers in order: the first event here must be the committed send.
    event = await layer.receive(channel)
    assert (event["kind"], event["seq"]) == ("message.created", 2)
    assert '"client_msg_id":"kept"' in event["text"]
    assert not await database_sync_to_async(Message.objects.filter(client_msg_id="lost").exists)()
    await layer.group_discard(conversation_group(conversation.pk), channel)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_send_waiting_on_a_removal_of_its_sender_is_refused(make_user):
    """The send takes the conversation's lock first and checks the membership in
    its next statement (a new snapshot; on PostgreSQL, inside the send's SQL
    function), so a removal that committed while the send waited for the lock
    is seen, and nothing is stored."""
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    locked, send_waits = threading.Event(), threading.Event()
    outcome = {}

    def remove_bob_while_holding_the_lock():
        try:
            with transaction.atomic():
                lock_conversation(conversation.pk)
                Membership.objects.filter(conversation=conversation, user=bob).update(is_active=False)
                locked.set()
                assert send_waits.wait(10)
        finally:
            connection.close()

    def send_as_bob():
        try:
            assert locked.wait(10)
            send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="late", body="after removal")
            outcome["result"] = "sent"
        except NotFound:
            outcome["result"] = "not found"
        finally:
            connection.close()

    remover, sender = threading.Thread(target=remove_bob_while_holding_the_lock), threading.Thread(target=send_as_bob)
    remover.start()
    sender.start()
    assert locked.wait(10)
    # The send is blocked on the conversation's row lock before the remover commits.
    with connection.cursor() as cursor:
        for _ in range(1000):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the send never waited for the lock")
    send_waits.set()
    remover.join(10)
    sender.join(10)
    assert outcome == {"result": "not found"}
    assert not Message.objects.filter(sender=bob).exists()
    # The seq the refused send took was rolled back: the log has no gap.
    conversation.refresh_from_db()
    seqs = list(Change.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, conversation.last_seq + 1))
    assert not Change.objects.filter(conversation=conversation, kind="message.created").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_changes_committed_in_order_are_published_in_order_whichever_thread_is_first_after_commit(
    make_user, monkeypatch
):
    """Seq 2 commits first, but its thread is held up after the commit (here by
    an earlier on_commit hook of its transaction) while seq 3's thread commits
    and publishes: seq 3 waits for seq 2."""
    import core.publish

    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    published = []
    monkeypatch.setattr(core.publish, "send_now", lambda event, groups: published.append(event.seq))
    first_recorded, second_committed = threading.Event(), threading.Event()

    def first():
        try:
            with transaction.atomic():
                transaction.on_commit(lambda: second_committed.wait(10))
                send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="first", body="1")
                first_recorded.set()
        finally:
            connection.close()

    def second():
        try:
            assert first_recorded.wait(10)
            with transaction.atomic():
                transaction.on_commit(second_committed.set)
                send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="second", body="2")
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert second_committed.is_set()
    assert published == [2, 3]
