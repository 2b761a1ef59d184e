"""Fixtures for the REST API tests."""

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from conversations.services import create_conversation, send_message


def clear_cache() -> None:
    """Empty the default cache. With Redis, only the cache's own keys: clear()
    would empty the whole Redis database, the channel layer's keys included,
    under any server process using it at the time."""
    default = caches["default"]
    if isinstance(default, RedisCache):
        client = default._cache.get_client(write=True)
        keys = list(client.scan_iter(match=default.make_key("*")))
        if keys:
            client.delete(*keys)
    else:
        default.clear()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The login throttle counts in the cache; each test starts from zero."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def make_group(db):
    def make(owner, *members, title="Team"):
        conversation, _ = create_conversation(
            creator=owner, kind="group", title=title, member_ids=[m.pk for m in members]
        )
        return conversation

    return make


@pytest.fixture
def post_message(db):
    """Send a message through the service (for setting up state, not testing sends)."""
    counter = iter(range(1, 10_000))

    def send(sender, conversation, body="hello"):
        return send_message(
            sender=sender, conversation_id=conversation.pk, client_msg_id=f"setup-{next(counter)}", body=body
        ).message

    return send
