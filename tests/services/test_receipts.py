"""Receipt cursors only move forward, and unread counts follow them."""

import pytest

from conversations.selectors import conversations_of
from conversations.services import create_conversation, delete_message, send_message
from core.errors import InvalidInput, NotFound, PermissionDenied
from delivery.models import ReceiptCursor
from delivery.selectors import message_receipts
from delivery.services import mark_delivered, mark_read

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk, carol.pk])
    messages = [
        send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"m{i}", body=f"m{i}").message
        for i in range(3)
    ]
    return conversation, alice, bob, carol, messages  # messages at seqs 2, 3, 4


def unread(user, conversation):
    return conversations_of(user).get(pk=conversation.pk).unread_count


def test_read_moves_forward_only(chat):
    conversation, _, bob, _, _ = chat
    assert mark_read(user=bob, conversation_id=conversation.pk, seq=3).read_seq == 3
    assert mark_read(user=bob, conversation_id=conversation.pk, seq=2).read_seq == 3
    cursor = ReceiptCursor.objects.get(user=bob, conversation=conversation)
    assert (cursor.read_seq, cursor.delivered_seq) == (3, 3)


def test_read_is_capped_at_the_last_seq(chat):
    conversation, _, bob, _, _ = chat
    assert mark_read(user=bob, conversation_id=conversation.pk, seq=10**6).read_seq == 4


def test_delivered_does_not_imply_read(chat):
    conversation, _, bob, _, _ = chat
    cursor = mark_delivered(user=bob, conversation_id=conversation.pk, seq=4)
    assert (cursor.delivered_seq, cursor.read_seq) == (4, 0)
    assert mark_delivered(user=bob, conversation_id=conversation.pk, seq=1).delivered_seq == 4


def test_unread_counts_other_peoples_live_messages_after_the_read_cursor(chat):
    conversation, alice, bob, _, messages = chat
    assert unread(bob, conversation) == 3
    assert unread(alice, conversation) == 0  # her own messages
    mark_read(user=bob, conversation_id=conversation.pk, seq=messages[0].seq)
    assert unread(bob, conversation) == 2
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=messages[2].pk)
    assert unread(bob, conversation) == 1


def test_bad_seq_and_non_members(chat, make_user):
    conversation, _, bob, _, _ = chat
    for bad in (-1, "3", None, True):
        with pytest.raises(InvalidInput):
            mark_read(user=bob, conversation_id=conversation.pk, seq=bad)
    with pytest.raises(NotFound):
        mark_read(user=make_user(), conversation_id=conversation.pk, seq=1)


def test_message_receipts_count_members_by_cursor(chat):
    conversation, alice, bob, carol, messages = chat
    mark_read(user=bob, conversation_id=conversation.pk, seq=messages[1].seq)
    mark_delivered(user=carol, conversation_id=conversation.pk, seq=messages[0].seq)
    first = message_receipts(alice, conversation.pk, messages[0].pk)
    assert (first.recipients, first.delivered_to, first.read_by) == (2, sorted([bob.pk, carol.pk]), [bob.pk])
    last = message_receipts(alice, conversation.pk, messages[2].pk)
    assert (last.delivered_to, last.read_by) == ([], [])
    with pytest.raises(PermissionDenied):
        message_receipts(bob, conversation.pk, messages[0].pk)


def test_conversations_are_listed_by_latest_activity(make_user):
    alice, bob = make_user(), make_user()
    busy, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    for i in range(5):
        send_message(sender=alice, conversation_id=busy.pk, client_msg_id=f"busy{i}", body="x")
    quiet, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    send_message(sender=bob, conversation_id=quiet.pk, client_msg_id="latest", body="x")
    assert [c.pk for c in conversations_of(alice)] == [quiet.pk, busy.pk]
    send_message(sender=bob, conversation_id=busy.pk, client_msg_id="busy-again", body="x")
    assert [c.pk for c in conversations_of(alice)] == [busy.pk, quiet.pk]
