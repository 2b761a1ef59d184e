"""The listener that publishes plain-SQL changes, without a channel layer: its
publish function is replaced by a queue the test reads."""

import queue
import threading

import psycopg
import pytest
from django.db import connection

from conversations.listener import ChangeListener, conninfo_from_settings
from conversations.services import create_conversation, send_message

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def sql_insert(conversation_id, sender_id, body):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO conversations_message (conversation_id, sender_id, body) VALUES (%s, %s, %s)",
            [conversation_id, sender_id, body],
        )


@pytest.fixture
def room(make_user):
    alice = make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", title="room")
    return conversation.pk, alice


class Recorder:
    def __init__(self):
        self.changes = queue.Queue()

    def __call__(self, change):
        self.changes.put(change)

    def take(self, timeout=10.0):
        return self.changes.get(timeout=timeout)

    def drained(self):
        items = []
        while not self.changes.empty():
            items.append(self.changes.get_nowait())
        return items


def test_catch_up_publishes_plain_sql_changes_once_in_order(room):
    cid, alice = room
    send_message(sender=alice, conversation_id=cid, client_msg_id="app", body="app")
    sql_insert(cid, alice.pk, "one")
    sql_insert(cid, alice.pk, "two")
    recorder = Recorder()
    listener = ChangeListener(conninfo_from_settings(), publish=recorder)

    with psycopg.connect(conninfo_from_settings(), autocommit=True) as conn:
        assert listener.catch_up(conn) == 2  # recent plain-SQL changes; the app's are its own
        assert [(c.seq, c.payload["body"]) for c in recorder.drained()] == [(3, "one"), (4, "two")]
        assert listener.catch_up(conn) == 0  # already published
        sql_insert(cid, alice.pk, "three")
        assert listener.catch_up(conn) == 1
        [change] = recorder.drained()
    assert (change.conversation_id, change.seq, change.kind) == (cid, 5, "message.created")
    assert listener.high_water_mark == change.id


def test_without_a_window_only_changes_above_the_high_water_mark_are_caught_up(room):
    cid, alice = room
    sql_insert(cid, alice.pk, "before the listener")
    recorder = Recorder()
    listener = ChangeListener(conninfo_from_settings(), publish=recorder, catch_up_window=0)
    with psycopg.connect(conninfo_from_settings(), autocommit=True) as conn:
        assert listener.catch_up(conn) == 0
    assert listener.high_water_mark is None


def test_run_follows_notifications_and_stops_on_request(room):
    cid, alice = room
    recorder = Recorder()
    listener = ChangeListener(conninfo_from_settings(), publish=recorder, poll_interval=0.1)
    thread = threading.Thread(target=listener.run)
    thread.start()
    try:
        assert listener.listening.wait(10)
        sql_insert(cid, alice.pk, "live")
        live = recorder.take()
        assert (live.conversation_id, live.seq, live.payload["body"]) == (cid, 2, "live")
    finally:
        listener.stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert recorder.drained() == []
