"""The REST API against its own OpenAPI schema, with schemathesis.

The schema is the live one, served at /api/v1/schema/ by the app itself (called
in-process through WSGI). Every operation gets one test: schemathesis sends the
schema's boundary cases (its "coverage" phase) and a fixed number of generated
requests, valid and invalid, derandomized so a run is repeatable, and applies
every check it has to each answer: no 5xx, only documented statuses and content
types, bodies matching the documented schemas, schema-violating requests
refused, schema-valid ones accepted, authentication enforced.

One exception is written out below (`DOCUMENTED_REFUSALS`): a few schema-valid
requests are refused by rules no OpenAPI schema can state, because they depend
on stored data (which users exist, what kind a conversation is, whether a
password is right) or on two parameters together. Each such answer is a 400
whose code, field and message are listed here and described in the operation's
400 response; any other 400 to a schema-valid request still fails the test.

The authenticated operations run as alice with a device token; the database
holds a few users, conversations, messages and devices with fixed ids, and the
generated ids are drawn from those most of the time, so the requests reach the
views' real work rather than only their 404s.
"""

import secrets

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from conversations.services import create_conversation, send_message
from devices.models import Device, hash_token
from tests.api.conftest import clear_cache

PASSWORD = "correct horse battery staple"
TOKEN = secrets.token_urlsafe(32)  # alice's device; created anew for each test

# Generated requests per operation, besides the coverage phase's boundary cases
# (which do not depend on it): bounds the run to about a minute.
MAX_EXAMPLES = 20

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20260101,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "auth": {"openapi": {"deviceToken": {"bearer": TOKEN}}},
        # The ids `world` creates (fixed: the sequences are reset for each test).
        "dictionaries": {
            "users": {"values": [1, 2, 3, 4, 5]},
            "conversations": {"values": [1, 2, 3, 4]},
            "messages": {"values": [1, 2, 3, 4]},
            "devices": {"values": [2, 3]},  # not 1: revoking the test's own device ends its run early
        },
        "parameters": {
            "path.conversation_id": {"dictionary": "conversations", "probability": 0.8},
            "path.user_id": {"dictionary": "users", "probability": 0.8},
            "path.message_id": {"dictionary": "messages", "probability": 0.8},
            "path.device_id": {"dictionary": "devices", "probability": 0.8},
            "body.user_id": {"dictionary": "users", "probability": 0.8},
            "body.member_ids[*]": {"dictionary": "users", "probability": 0.8},
            "body.reply_to": {"dictionary": "messages", "probability": 0.8},
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", WSGIHandler(), config=CONFIG)

# Refusals of schema-valid requests that the schema documents in words (each
# operation's 400 description) because it cannot state them as constraints:
# operation -> {(code, field, message)}.
DOCUMENTED_REFUSALS = {
    # Whether a username and password match is the point of logging in.
    "POST /api/v1/auth/login": {
        ("invalid_credentials", None, "Unable to log in with the given username and password."),
    },
    # Which user ids exist; that the other member of a direct conversation is not
    # yourself. (Its count and its lack of a title could be a oneOf on `kind`, but
    # the request would still depend on stored users.)
    "POST /api/v1/conversations": {
        ("invalid", "member_ids", "member_ids must all be ids of existing users."),
        ("invalid", "member_ids", "A direct conversation has exactly one other member."),
        ("invalid", "title", "A direct conversation has no title."),
    },
    # What kind the conversation in the path is.
    "PATCH /api/v1/conversations/{conversation_id}": {
        ("invalid", "conversation", "A direct conversation cannot be renamed."),
    },
    "POST /api/v1/conversations/{conversation_id}/members": {
        ("invalid", "user_id", "No such user."),
        ("invalid", "conversation", "A direct conversation cannot have members added."),
    },
    "DELETE /api/v1/conversations/{conversation_id}/members/{user_id}": {
        ("invalid", "conversation", "A direct conversation cannot have members removed."),
    },
    # Two query parameters that exclude each other: OpenAPI describes each alone.
    "GET /api/v1/conversations/{conversation_id}/messages": {
        ("invalid", "before", "before: Give either after or before, not both."),
    },
    # Which conversation the message replied to is in.
    "POST /api/v1/conversations/{conversation_id}/messages": {
        ("invalid", "reply_to", "reply_to is not a message of this conversation."),
    },
}


@pytest.fixture
def world(make_user):
    """Alice (1, whose device the tests use), bob (2), carol (3), dave (4) and an
    inactive user (5); a group alice owns with bob and carol (1), a direct
    conversation of alice and bob (2), bob's group alice is a plain member of (3)
    and one she is not in (4); messages 1-4; alice's phone (device 2), bob's (3)."""
    clear_cache()
    alice, bob, carol, _ = (make_user(name, password=PASSWORD) for name in ("alice", "bob", "carol", "dave"))
    make_user("gone", is_active=False)
    Device.objects.create(user=alice, name="schemathesis", token_hash=hash_token(TOKEN))
    Device.objects.create(user=alice, name="phone", token_hash=hash_token(secrets.token_urlsafe(32)))
    Device.objects.create(user=bob, name="phone", token_hash=hash_token(secrets.token_urlsafe(32)))
    team, _ = create_conversation(creator=alice, kind="group", title="Team", member_ids=[bob.pk, carol.pk])
    direct, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    bobs, _ = create_conversation(creator=bob, kind="group", title="Bob's", member_ids=[alice.pk])
    create_conversation(creator=bob, kind="group", title="Without alice", member_ids=[carol.pk])
    send_message(sender=alice, conversation_id=team.pk, client_msg_id="a1", body="hello")
    send_message(sender=bob, conversation_id=team.pk, client_msg_id="b1", body="hi")
    send_message(sender=bob, conversation_id=bobs.pk, client_msg_id="b2", body="welcome")
    send_message(sender=alice, conversation_id=direct.pk, client_msg_id="a2", body="psst")
    yield
    clear_cache()


def is_documented_refusal(case, response) -> bool:
    if response.status_code != 400:
        return False
    body = response.json()
    refusal = (body.get("code"), body.get("field"), body.get("message"))
    return refusal in DOCUMENTED_REFUSALS.get(case.operation.label, ())


# Each operation's test runs many requests against one `world`: the fixture is
# function-scoped on purpose, so each operation starts from the same data.
@pytest.mark.django_db(transaction=True, reset_sequences=True)
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_keeps_to_its_schema(case, world):
    response = case.call()
    excluded = [positive_data_acceptance] if is_documented_refusal(case, response) else []
    case.validate_response(response, excluded_checks=excluded)
