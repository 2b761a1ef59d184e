"""Read and delivered cursors, and a message's receipts for its sender."""

import pytest

from delivery.models import ReceiptCursor

pytestmark = pytest.mark.django_db


def mark(client, conversation, what, seq):
    return client.post(f"/api/v1/conversations/{conversation.pk}/{what}", {"seq": seq}, format="json")


def test_read_moves_forward_only(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    seqs = [post_message(bob, conversation).seq for _ in range(3)]
    client = api_for(alice)

    forward = mark(client, conversation, "read", seqs[2])
    back = mark(client, conversation, "read", seqs[0])

    assert forward.status_code == back.status_code == 200
    expected = {"conversation_id": conversation.pk, "read_seq": seqs[2], "delivered_seq": seqs[2]}
    assert forward.json() == expected
    assert back.json() == expected
    cursor = ReceiptCursor.objects.get(user=alice, conversation=conversation)
    assert (cursor.read_seq, cursor.delivered_seq) == (seqs[2], seqs[2])
    listed = client.get(f"/api/v1/conversations/{conversation.pk}").json()
    assert (listed["read_seq"], listed["unread_count"]) == (seqs[2], 0)


def test_read_is_capped_at_the_conversations_last_seq(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    last = post_message(bob, conversation)

    response = mark(api_for(alice), conversation, "read", last.seq + 50)

    assert response.json()["read_seq"] == last.seq


def test_delivered_moves_only_the_delivered_cursor_forward(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    seqs = [post_message(bob, conversation).seq for _ in range(2)]
    client = api_for(alice)

    forward = mark(client, conversation, "delivered", seqs[1])
    back = mark(client, conversation, "delivered", seqs[0])

    expected = {"conversation_id": conversation.pk, "read_seq": 0, "delivered_seq": seqs[1]}
    assert forward.status_code == 200
    assert forward.json() == expected
    assert back.json() == expected
    assert client.get(f"/api/v1/conversations/{conversation.pk}").json()["unread_count"] == 2


@pytest.mark.parametrize("what", ["read", "delivered"])
@pytest.mark.parametrize("body", [{}, {"seq": -1}, {"seq": "latest"}, {"seq": None}])
def test_cursor_endpoints_reject_bad_seq_naming_it(make_user, api_for, make_group, what, body):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)

    response = api_for(alice).post(f"/api/v1/conversations/{conversation.pk}/{what}", body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "seq"
    assert not ReceiptCursor.objects.exists()


def test_receipts_count_delivered_and_read_for_the_sender(make_user, api_for, make_group, post_message):
    alice, bob, carol, dave = make_user("alice"), make_user("bob"), make_user("carol"), make_user("dave")
    conversation = make_group(alice, bob, carol, dave)
    message = post_message(alice, conversation, "hi all")
    mark(api_for(bob), conversation, "delivered", message.seq)
    mark(api_for(carol), conversation, "read", message.seq)

    response = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}/messages/{message.pk}/receipts")

    assert response.status_code == 200
    assert response.json() == {
        "message_id": message.pk,
        "seq": message.seq,
        "recipients": 3,
        "delivered_count": 2,
        "read_count": 1,
        "delivered_to": [{"id": bob.pk, "username": "bob"}, {"id": carol.pk, "username": "carol"}],
        "read_by": [{"id": carol.pk, "username": "carol"}],
    }


def test_receipts_ignore_cursors_before_the_message(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    earlier = post_message(alice, conversation)
    message = post_message(alice, conversation)
    mark(api_for(bob), conversation, "read", earlier.seq)

    body = api_for(alice).get(f"/api/v1/conversations/{conversation.pk}/messages/{message.pk}/receipts").json()

    assert (body["recipients"], body["delivered_count"], body["read_count"]) == (1, 0, 0)
    assert body["delivered_to"] == body["read_by"] == []


def test_receipts_are_for_the_sender_only(make_user, api_for, make_group, post_message):
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, bob)
    message = post_message(alice, conversation)

    response = api_for(bob).get(f"/api/v1/conversations/{conversation.pk}/messages/{message.pk}/receipts")

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
