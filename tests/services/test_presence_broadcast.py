"""Where presence goes live: small conversations, subscribers and the user's own
devices; a window's worth of changes travels as one layer message per group."""

import json

import pytest
from channels.db import database_sync_to_async

from conversations.services import create_conversation
from presence import live
from presence.selectors import live_presence_routes, visible_presences
from presence.services import device_online

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rooms(make_user):
    """A small conversation of 3 and a big one of 6 (the limit is 4)."""
    users = [make_user() for _ in range(6)]
    small, _ = create_conversation(creator=users[0], kind="group", member_ids=[u.pk for u in users[1:3]])
    big, _ = create_conversation(creator=users[0], kind="group", member_ids=[u.pk for u in users[1:]])
    return users, small, big


def test_live_routes_skip_conversations_past_the_limit(rooms, settings):
    users, small, big = rooms
    payloads, conversations = live_presence_routes([u.pk for u in users], max_members=4)
    assert conversations == {u.pk: [small.pk] if u in users[:3] else [] for u in users}
    assert payloads[users[0].pk] == {"user_id": users[0].pk, "status": "offline", "last_seen_at": None}
    _, everything = live_presence_routes([users[5].pk], max_members=6)
    assert everything == {users[5].pk: [big.pk]}


def test_only_contacts_presence_is_visible(rooms, make_user):
    users, _, _ = rooms
    stranger = make_user()
    asked = [users[4].pk, stranger.pk, 999_999]
    assert [p["user_id"] for p in visible_presences(users[0], asked)] == [users[4].pk]
    assert visible_presences(stranger, [users[0].pk]) == []


async def test_a_window_of_changes_is_one_layer_message_per_group(rooms, make_device, settings, monkeypatch):
    settings.PRESENCE_LIVE_MAX_MEMBERS = 4
    users, small, big = rooms
    sent = {}

    async def capture(events_by_group):
        sent.update(events_by_group)

    monkeypatch.setattr(live, "send_batches_async", capture)
    for user in users:
        device, _ = await database_sync_to_async(make_device)(user)
        await database_sync_to_async(device_online)(device=device, connection_id=f"c{user.pk}")
    await live._broadcast({user.pk: None for user in users})

    in_small = sorted(json.loads(e.text())["payload"]["user_id"] for e in sent[f"conversation.{small.pk}"])
    assert in_small == sorted(u.pk for u in users[:3])
    assert f"conversation.{big.pk}" not in sent  # past the limit: subscribers only
    for user in users:
        (own,) = sent[f"user.{user.pk}"]
        (subscribed,) = sent[f"presence.{user.pk}"]
        assert own is subscribed and json.loads(own.text())["payload"]["status"] == "online"
    assert len(sent) == 1 + 2 * len(users)
