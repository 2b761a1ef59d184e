"""Plain-SQL writes to messages enter the change log through PostgreSQL triggers.

An INSERT, an UPDATE of the body or of deleted_at, and a DELETE made outside
the app get what the services give their writes: the next seq, a change-log
entry shaped like the app's, a tombstone for a delete. The app's own writes are
left alone by the triggers, and seqs stay gapless when both kinds interleave.
"""

import json

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from conversations.listener import conninfo_from_settings
from conversations.models import Change, Conversation, Message, MessageEdit
from conversations.payloads import message_payload
from conversations.services import (
    create_conversation,
    delete_message,
    edit_message,
    send_message,
)
from core.events import dumps
from tests.threads import run_in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def sql(statement, params=()):
    """Run one statement as an outside writer would (its own committed transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall() if cursor.description else None
        return rows, cursor.rowcount


def sql_insert(conversation_id, sender_id, body):
    rows, _ = sql(
        "INSERT INTO conversations_message (conversation_id, sender_id, body) VALUES (%s, %s, %s) RETURNING id",
        [conversation_id, sender_id, body],
    )
    return Message.objects.get(pk=rows[0][0])


def as_logged(payload: dict) -> dict:
    """What the app stores for a payload (DjangoJSONEncoder, then JSON)."""
    return json.loads(dumps(payload))


def log_of(conversation):
    return list(Change.objects.filter(conversation=conversation).order_by("seq"))


@pytest.fixture
def room(make_user):
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", title="room", member_ids=[bob.pk])
    return conversation, alice, bob


def test_insert_takes_the_next_seq_and_logs_a_created_change(room):
    conversation, alice, bob = room
    sent = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="from the app")

    message = sql_insert(conversation.pk, bob.pk, "from psql")

    assert message.seq == sent.message.seq + 1 == 3
    assert message.version == 1 and message.client_msg_id.startswith("sql-") and message.created_at is not None
    conversation.refresh_from_db()
    assert conversation.last_seq == 3
    change = log_of(conversation)[-1]
    assert (change.seq, change.kind, change.origin) == (3, "message.created", "sql")
    assert (change.actor_id, change.message_id) == (bob.pk, message.pk)
    # Exactly the app's payload, timestamps encoded the same way.
    assert change.payload == as_logged(message_payload(message))
    assert set(change.payload) == set(log_of(conversation)[1].payload)  # the app's message.created


@pytest.mark.parametrize(
    "created_at, encoded",
    [
        ("2025-01-02T03:04:05Z", "2025-01-02T03:04:05Z"),  # no fraction, as Django writes it
        ("2025-01-02T03:04:05.0005Z", "2025-01-02T03:04:05.000Z"),
        ("2025-01-02T03:04:05.999999+02:00", "2025-01-02T01:04:05.999Z"),  # truncated, in UTC
    ],
)
def test_insert_keeps_given_columns_but_not_a_given_seq(room, created_at, encoded):
    conversation, alice, _ = room
    rows, _ = sql(
        "INSERT INTO conversations_message (conversation_id, sender_id, client_msg_id, body, seq, version, created_at)"
        " VALUES (%s, %s, 'import-7', 'imported', 99, 1, %s) RETURNING id",
        [conversation.pk, alice.pk, created_at],
    )
    message = Message.objects.get(pk=rows[0][0])
    assert (message.seq, message.client_msg_id) == (2, "import-7")
    change = log_of(conversation)[-1]
    assert change.payload["created_at"] == encoded
    assert change.payload == as_logged(message_payload(message))


def test_a_retried_import_leaves_no_hole_in_the_log(room):
    conversation, alice, _ = room
    insert = (
        "INSERT INTO conversations_message (conversation_id, sender_id, client_msg_id, body)"
        " VALUES (%s, %s, 'import-1', %s) ON CONFLICT (sender_id, client_msg_id) DO "
    )
    sql(insert + "NOTHING", [conversation.pk, alice.pk, "imported"])
    _, skipped = sql(insert + "NOTHING", [conversation.pk, alice.pk, "imported"])
    assert skipped == 0
    sql(insert + "UPDATE SET body = EXCLUDED.body", [conversation.pk, alice.pk, "imported, corrected"])
    next_message = sql_insert(conversation.pk, alice.pk, "next")

    assert [(c.seq, c.kind) for c in log_of(conversation)] == [
        (1, "conversation.created"),
        (2, "message.created"),
        (3, "message.edited"),
        (4, "message.created"),
    ]
    assert next_message.seq == 4
    imported = Message.objects.get(client_msg_id="import-1")
    assert (imported.seq, imported.body, imported.version) == (2, "imported, corrected", 2)


def test_update_of_the_body_is_an_edit_with_history(room):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="frist").message

    _, count = sql("UPDATE conversations_message SET body = 'first' WHERE id = %s", [message.pk])

    assert count == 1
    message.refresh_from_db()
    assert (message.body, message.version, message.seq) == ("first", 2, 2)
    assert message.edited_at is not None
    [edit] = MessageEdit.objects.filter(message=message)
    assert (edit.version, edit.body, edit.edited_by_id) == (1, "frist", None)
    change = log_of(conversation)[-1]
    assert (change.seq, change.kind, change.origin, change.actor_id) == (3, "message.edited", "sql", None)
    assert change.payload == as_logged({**message_payload(message), "edited_by": None})

    # The same body again is no edit; an app edit on top still checks the version.
    sql("UPDATE conversations_message SET body = 'first' WHERE id = %s", [message.pk])
    assert len(log_of(conversation)) == 3
    edited = edit_message(
        actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="1st", expected_version=2
    )
    assert edited.version == 3


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM conversations_message WHERE id = %s",
        "UPDATE conversations_message SET deleted_at = now() WHERE id = %s",
    ],
    ids=["delete", "set-deleted_at"],
)
def test_delete_leaves_a_tombstone_like_delete_message(room, statement):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="secret").message
    edit_message(
        actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="secret 2", expected_version=1
    )

    sql(statement, [message.pk])

    message.refresh_from_db()  # the row stays
    assert message.is_deleted and message.body == "" and message.version == 3
    assert not MessageEdit.objects.filter(message=message).exists()
    created, edited, deleted = log_of(conversation)[1:]
    for earlier in (created, edited):
        assert earlier.payload["body"] == "" and earlier.payload["redacted"] is True
    assert (deleted.seq, deleted.kind, deleted.origin, deleted.actor_id) == (4, "message.deleted", "sql", None)
    assert deleted.payload == as_logged({**message_payload(message), "deleted_by": None})


def test_a_tombstone_is_final(room):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="gone").message
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)

    _, updated = sql("UPDATE conversations_message SET body = 'back', deleted_at = NULL WHERE id = %s", [message.pk])
    _, deleted = sql("DELETE FROM conversations_message WHERE id = %s", [message.pk])

    assert (updated, deleted) == (0, 0)
    message.refresh_from_db()
    assert message.is_deleted and message.body == "" and message.version == 2
    assert [c.kind for c in log_of(conversation)] == ["conversation.created", "message.created", "message.deleted"]


def test_a_message_cannot_move(room, make_user):
    conversation, alice, _ = room
    other, _ = create_conversation(creator=alice, kind="group", title="other", member_ids=[make_user().pk])
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="here").message
    with pytest.raises(DatabaseError, match="cannot change"):
        sql("UPDATE conversations_message SET conversation_id = %s WHERE id = %s", [other.pk, message.pk])
    with pytest.raises(DatabaseError, match="cannot change"):
        sql("UPDATE conversations_message SET seq = 50 WHERE id = %s", [message.pk])


def test_app_writes_are_logged_once(room):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="one").message
    edit_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="two", expected_version=1)
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)

    log = log_of(conversation)
    assert [(c.seq, c.kind, c.origin) for c in log] == [
        (1, "conversation.created", "app"),
        (2, "message.created", "app"),
        (3, "message.edited", "app"),
        (4, "message.deleted", "app"),
    ]
    assert log[3].payload["deleted_by"] == alice.pk


def test_writes_that_opt_out_are_not_logged(room):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="purge me").message
    with transaction.atomic():
        sql("SET LOCAL realtime.origin = 'app'")
        Message.objects.filter(pk=message.pk).delete()  # a real purge, not a tombstone
    assert not Message.objects.filter(pk=message.pk).exists()
    assert [(c.kind, c.message_id) for c in log_of(conversation)] == [
        ("conversation.created", None),
        ("message.created", None),  # unlinked by the purge
    ]


def test_the_notification_is_sent_on_commit_and_small(room):
    conversation, alice, _ = room
    with psycopg.connect(conninfo_from_settings(), autocommit=True) as listener:
        listener.execute("LISTEN realtime_changes")
        with transaction.atomic():
            sql_insert(conversation.pk, alice.pk, "x" * 3000)
            assert list(listener.notifies(timeout=0.2)) == []  # nothing before commit
        [notify] = list(listener.notifies(timeout=5, stop_after=1))
    assert json.loads(notify.payload) == {"conversation_id": conversation.pk, "seq": 2}


def test_app_and_sql_writers_interleave_without_gaps(room, make_user):
    conversation, alice, bob = room
    per_thread, threads = 10, 8

    def write(i):
        for n in range(per_thread):
            if i % 2:
                send_message(
                    sender=alice, conversation_id=conversation.pk, client_msg_id=f"{i}-{n}", body=f"app {i}-{n}"
                )
            else:
                sql_insert(conversation.pk, bob.pk, f"sql {i}-{n}")
            if n % 3 == 0:  # and some edits, both ways
                last = Message.objects.filter(conversation=conversation).order_by("-seq").first()
                sql("UPDATE conversations_message SET body = body || '!' WHERE id = %s", [last.pk])

    run_in_threads(threads, write)

    total = Change.objects.filter(conversation=conversation).count()
    log = log_of(conversation)
    assert [c.seq for c in log] == list(range(1, total + 1))
    assert Conversation.objects.get(pk=conversation.pk).last_seq == total
    created = [c for c in log if c.kind == "message.created"]
    assert len(created) == Message.objects.filter(conversation=conversation).count() == per_thread * threads
    assert {c.origin for c in created if c.payload["body"].startswith("app")} == {"app"}
    assert {c.origin for c in created if c.payload["body"].startswith("sql")} == {"sql"}
    assert sorted(c.message_id for c in created) == sorted(Message.objects.values_list("pk", flat=True))
    for message in Message.objects.filter(conversation=conversation):
        assert message.version == 1 + MessageEdit.objects.filter(message=message).count()


def test_an_orm_delete_outside_the_services_also_leaves_a_tombstone(room):
    conversation, alice, _ = room
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a-1", body="secret").message

    Message.objects.filter(pk=message.pk).delete()  # Django first unlinks the log rows (SET_NULL)

    message.refresh_from_db()
    assert message.is_deleted and message.body == ""
    created, deleted = log_of(conversation)[1:]
    assert created.payload["body"] == "" and created.payload["redacted"] is True
    assert (deleted.kind, deleted.message_id) == ("message.deleted", message.pk)
