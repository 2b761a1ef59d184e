"""Fixtures for the REST API tests."""

import pytest
from django.core.cache import cache

from conversations.services import create_conversation, send_message


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The login throttle counts in the cache; each test starts from zero."""
    cache.clear()
    yield
    cache.clear()


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
