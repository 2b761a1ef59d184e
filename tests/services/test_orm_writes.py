"""ORM writes made outside the services are logged and published like the services' own.

Plain Django code (`Message.objects.create`, `.save()`, `.delete()`, the
QuerySet bulk paths) gets the conversation's next seq, a change-log entry with
the payload the service would log, in the same transaction, and one publish
after commit; the services' own writes are not logged twice; the services'
input rules refuse the same inputs with the same errors, leaving nothing
behind. Runs on SQLite and on PostgreSQL (where the triggers must also stand
aside for these writes).
"""

import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import NotSupportedError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F

from conversations.changelog import groups_of, logged_by_caller
from conversations.models import Change, Conversation, Membership, Message, MessageEdit
from conversations.payloads import conversation_payload, member_payload, message_payload
from conversations.services import (
    add_member,
    create_conversation,
    delete_message,
    edit_message,
    remove_member,
    rename_conversation,
    send_message,
)
from core.errors import InvalidInput, MessageDeleted, ServiceError, VersionConflict
from core.events import dumps
from tests.threads import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def as_logged(payload: dict) -> dict:
    return json.loads(dumps(payload))


def log_of(conversation_id) -> list[Change]:
    return list(Change.objects.filter(conversation_id=conversation_id).order_by("seq"))


def kinds(conversation_id) -> list[tuple]:
    return [(c.seq, c.kind) for c in log_of(conversation_id)]


@pytest.fixture
def published(monkeypatch):
    """Every event published after commit: (kind, conversation_id, seq, groups)."""
    import core.publish

    sent = []
    monkeypatch.setattr(
        core.publish,
        "send_now",
        lambda event, groups: sent.append((event.kind, event.conversation_id, event.seq, groups)),
    )
    return sent


@pytest.fixture
def room(make_user):
    """A group of alice (owner) and bob, created by the service: seq 1."""
    alice, bob = make_user(), make_user()
    conversation, _ = create_conversation(creator=alice, kind="group", title="room", member_ids=[bob.pk])
    return conversation, alice, bob


def refusal(write) -> dict:
    with pytest.raises(ServiceError) as raised:
        write()
    return raised.value.as_dict()


def snapshot(conversation_id):
    """Everything a half-done write could leave behind."""
    return (
        Conversation.objects.get(pk=conversation_id).last_seq,
        Change.objects.filter(conversation_id=conversation_id).count(),
        Message.objects.filter(conversation_id=conversation_id).count(),
        MessageEdit.objects.count(),
        list(Membership.objects.filter(conversation_id=conversation_id).values_list("user_id", "is_active", "role")),
    )


# Messages


def test_message_objects_create_is_a_send(room, published):
    conversation, alice, _ = room
    published.clear()

    message = Message.objects.create(conversation=conversation, sender=alice, body="from my code")

    assert (message.seq, message.version) == (2, 1)
    assert message.client_msg_id.startswith("orm-")
    change = log_of(conversation.pk)[-1]
    assert (change.seq, change.kind, change.origin, change.actor_id, change.message_id) == (
        2,
        "message.created",
        "app",
        alice.pk,
        message.pk,
    )
    message.refresh_from_db()
    assert change.payload == as_logged(message_payload(message))
    assert published == [("message.created", conversation.pk, 2, groups_of(change))]
    assert Conversation.objects.get(pk=conversation.pk).last_seq == 2


def test_the_orm_payload_has_the_services_shape(room):
    conversation, alice, _ = room
    sent = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="s-1", body="service").message
    written = Message.objects.create(conversation=conversation, sender=alice, client_msg_id="o-1", body="orm")
    by_service, by_orm = log_of(conversation.pk)[1:]
    assert by_service.payload.keys() == by_orm.payload.keys()
    assert by_orm.payload == {**by_service.payload, **as_logged(message_payload(written)), "seq": 3}
    assert sent.seq == 2


def test_saving_an_edited_body_is_an_edit(room, published):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="first")
    published.clear()

    message.body = "second"
    message.save()

    assert message.version == 2 and message.edited_at is not None
    message.refresh_from_db()
    assert (message.body, message.version) == ("second", 2)
    assert list(MessageEdit.objects.filter(message=message).values_list("version", "body", "edited_by")) == [
        (1, "first", None)
    ]
    change = log_of(conversation.pk)[-1]
    assert (change.seq, change.kind, change.actor_id, change.message_id) == (3, "message.edited", None, message.pk)
    assert change.payload == {**as_logged(message_payload(message)), "edited_by": None}
    assert published == [("message.edited", conversation.pk, 3, [f"conversation.{conversation.pk}"])]


def test_save_with_update_fields_still_bumps_the_version(room):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="first")
    message.body = "second"
    message.save(update_fields=["body"])
    message.refresh_from_db()
    assert (message.version, message.body) == (2, "second") and message.edited_at is not None
    assert log_of(conversation.pk)[-1].payload["version"] == 2


def test_saving_other_columns_or_the_same_body_logs_nothing(room, make_device):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="same")
    device, _ = make_device(alice)
    message.sender_device = device
    message.save()
    Message.objects.filter(pk=message.pk).update(sender_device=None)
    message.refresh_from_db()
    assert message.version == 1
    assert kinds(conversation.pk) == [(1, "conversation.created"), (2, "message.created")]


def test_an_edit_from_a_stale_instance_is_a_version_conflict(room):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="v1")
    edit_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="v2", expected_version=1)
    before = snapshot(conversation.pk)

    message.body = "v2 from a stale copy"
    with pytest.raises(VersionConflict) as conflict:
        message.save()

    assert conflict.value.details == {"current_version": 2, "current_body": "v2"}
    assert snapshot(conversation.pk) == before


def test_delete_leaves_the_services_tombstone(room, published):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="secret")
    message.body = "secret, edited"
    message.save()
    published.clear()

    assert message.delete() == (0, {})

    message.refresh_from_db()
    assert message.is_deleted and message.body == "" and message.version == 3
    assert not MessageEdit.objects.filter(message=message).exists()
    created, edited, deleted = log_of(conversation.pk)[1:]
    assert created.payload["body"] == edited.payload["body"] == "" and created.payload["redacted"] is True
    assert (deleted.seq, deleted.kind, deleted.message_id) == (4, "message.deleted", message.pk)
    assert deleted.payload == {**as_logged(message_payload(message)), "deleted_by": None}
    assert published == [("message.deleted", conversation.pk, 4, [f"conversation.{conversation.pk}"])]


def test_a_tombstone_is_final(room):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="gone soon")
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)
    before = snapshot(conversation.pk)

    message.body = "back from the dead"
    with pytest.raises(MessageDeleted):
        message.save()
    message.refresh_from_db()
    assert message.delete() == (0, {})  # deleting a deleted message changes nothing
    assert snapshot(conversation.pk) == before


def test_queryset_delete_tombstones_each_message(room):
    conversation, alice, bob = room
    for i in range(3):
        Message.objects.create(conversation=conversation, sender=bob, body=f"spam {i}")

    assert Message.objects.filter(sender=bob).delete() == (0, {})

    assert Message.objects.filter(sender=bob, deleted_at__isnull=False).count() == 3
    assert [kind for _, kind in kinds(conversation.pk)[-3:]] == ["message.deleted"] * 3


def test_a_real_delete_is_logged_too(room):
    """The base manager bypasses the tombstone: the row goes, the log says deleted."""
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="purged")
    Message._base_manager.filter(pk=message.pk).delete()
    assert not Message.objects.filter(pk=message.pk).exists()
    created, deleted = log_of(conversation.pk)[1:]
    assert created.payload["body"] == "" and created.payload["redacted"] is True
    assert deleted.kind == "message.deleted" and deleted.message_id is None
    assert (deleted.payload["id"], deleted.payload["deleted"], deleted.payload["version"]) == (message.pk, True, 2)


def test_a_purge_inside_logged_by_caller_is_silent(room, published):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="purge me")
    published.clear()
    with logged_by_caller():
        Message.objects.filter(pk=message.pk).delete()
    assert not Message.objects.filter(pk=message.pk).exists()
    assert kinds(conversation.pk) == [(1, "conversation.created"), (2, "message.created")]
    assert published == []


# The services' rules, with the services' errors, and nothing half-logged.

TOO_LONG = "x" * (settings.MESSAGE_BODY_MAX_CHARS + 1)


@pytest.mark.parametrize("body", [TOO_LONG, "", "   ", "nul\x00byte"], ids=["too_long", "empty", "blank", "nul"])
def test_a_body_the_service_refuses_is_refused_the_same_way(room, body):
    conversation, alice, _ = room
    message = Message.objects.create(conversation=conversation, sender=alice, body="ok")
    before = snapshot(conversation.pk)

    by_service = refusal(
        lambda: send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="s", body=body)
    )
    assert refusal(lambda: Message.objects.create(conversation=conversation, sender=alice, body=body)) == by_service
    message.body = body
    assert refusal(message.save) == by_service
    assert by_service["code"] == "invalid" and by_service["field"] == "body"
    assert snapshot(conversation.pk) == before


def test_a_non_member_cannot_send_through_the_orm(room, make_user):
    conversation, _, _ = room
    outsider = make_user()
    before = snapshot(conversation.pk)
    by_service = refusal(
        lambda: send_message(sender=outsider, conversation_id=conversation.pk, client_msg_id="s", body="hi")
    )
    assert refusal(lambda: Message.objects.create(conversation=conversation, sender=outsider, body="hi")) == by_service
    assert snapshot(conversation.pk) == before


def test_a_reply_must_be_in_the_conversation(room):
    conversation, alice, bob = room
    other, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    elsewhere = Message.objects.create(conversation=other, sender=alice, body="elsewhere")
    with pytest.raises(InvalidInput, match="reply_to is not a message of this conversation"):
        Message.objects.create(conversation=conversation, sender=alice, body="re", reply_to=elsewhere)


def test_a_message_cannot_move(room):
    conversation, alice, bob = room
    other, _ = create_conversation(creator=alice, kind="group", member_ids=[bob.pk])
    message = Message.objects.create(conversation=conversation, sender=alice, body="here")
    message.conversation = other
    with pytest.raises(InvalidInput, match="cannot change"):
        message.save()


def test_a_refused_write_leaves_the_callers_transaction_usable(room):
    conversation, alice, _ = room
    with transaction.atomic():
        with pytest.raises(InvalidInput):
            Message.objects.create(conversation=conversation, sender=alice, body="")
        Message.objects.create(conversation=conversation, sender=alice, body="still fine")
    assert kinds(conversation.pk) == [(1, "conversation.created"), (2, "message.created")]


def test_a_rolled_back_orm_write_publishes_and_logs_nothing(room, published):
    conversation, alice, _ = room
    published.clear()
    before = snapshot(conversation.pk)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        Message.objects.create(conversation=conversation, sender=alice, body="never")
        conversation.title = "never"
        conversation.save()
        raise Abort

    assert published == []
    assert snapshot(conversation.pk) == before


def test_a_service_write_is_logged_and_published_once(room, published):
    conversation, alice, bob = room
    published.clear()
    message = send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="s-1", body="one").message
    edit_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk, body="two", expected_version=1)
    delete_message(actor=alice, conversation_id=conversation.pk, message_id=message.pk)
    rename_conversation(actor=alice, conversation_id=conversation.pk, title="renamed")
    carol = get_user_model().objects.create_user("carol")
    add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    remove_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)

    expected = ["message.created", "message.edited", "message.deleted", "conversation.renamed"]
    expected += ["member.added", "member.removed"]
    assert [kind for _, kind in kinds(conversation.pk)[1:]] == expected
    assert [p[0] for p in published] == expected
    assert [p[2] for p in published] == list(range(2, 8))
    assert {c.actor_id for c in log_of(conversation.pk)[1:]} == {alice.pk}


def test_orm_writes_after_a_service_call_in_one_transaction_are_still_logged(room):
    conversation, alice, bob = room
    with transaction.atomic():
        send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="s-1", body="by the service")
        Message.objects.create(conversation=conversation, sender=bob, body="by my code")
    assert [(c.seq, c.kind, c.actor_id) for c in log_of(conversation.pk)[1:]] == [
        (2, "message.created", alice.pk),
        (3, "message.created", bob.pk),
    ]


# Conversations


def test_a_conversation_created_and_renamed_with_the_orm(make_user, published):
    alice = make_user()
    conversation = Conversation.objects.create(kind="group", title="  support  ", created_by=alice)
    assert (conversation.title, conversation.last_seq) == ("support", 1)
    [created] = log_of(conversation.pk)
    assert (created.kind, created.actor_id) == ("conversation.created", alice.pk)
    assert created.payload == as_logged(conversation_payload(conversation, []))

    conversation.title = "support (EU)"
    conversation.save()

    renamed = log_of(conversation.pk)[-1]
    assert (renamed.seq, renamed.kind, renamed.actor_id) == (2, "conversation.renamed", None)
    assert renamed.payload == {"title": "support (EU)", "previous_title": "support", "renamed_by": None}
    assert conversation.last_seq == 2
    assert [p[:3] for p in published] == [
        ("conversation.created", conversation.pk, 1),
        ("conversation.renamed", conversation.pk, 2),
    ]


def test_a_stale_conversation_instance_cannot_rewind_the_log(room):
    conversation, alice, _ = room  # last_seq 1 in this instance
    for i in range(3):
        send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"s-{i}", body="x")
    conversation.title = "renamed from a stale copy"
    conversation.save()
    conversation.refresh_from_db()
    assert conversation.last_seq == 5
    assert [c.seq for c in log_of(conversation.pk)] == [1, 2, 3, 4, 5]
    assert Message.objects.create(conversation=conversation, sender=alice, body="next").seq == 6


def test_a_rename_the_service_refuses_is_refused_the_same_way(room, make_user):
    conversation, alice, bob = room
    direct, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    too_long = "t" * (settings.CONVERSATION_TITLE_MAX_CHARS + 1)
    for target, title in ((direct, "a title"), (conversation, too_long), (conversation, "nul\x00")):
        before = snapshot(target.pk)
        by_service = refusal(
            lambda target=target, title=title: rename_conversation(
                actor=alice, conversation_id=target.pk, title=title, as_moderator=True
            )
        )
        target.title = title
        assert refusal(target.save) == by_service
        target.refresh_from_db()
        assert snapshot(target.pk) == before
    assert Conversation.objects.filter(title=too_long).count() == 0


def test_deleting_a_conversation_takes_its_log_and_announces_nothing(room, published):
    conversation, alice, _ = room
    Message.objects.create(conversation=conversation, sender=alice, body="x")
    published.clear()
    conversation.delete()
    assert not Change.objects.filter(conversation_id=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert published == []


# Memberships


def test_membership_created_with_the_orm_is_a_member_added(room, make_user, published):
    conversation, alice, bob = room
    carol = make_user()
    published.clear()

    membership = Membership.objects.create(conversation=conversation, user=carol)

    assert (membership.joined_seq, membership.role) == (2, "member")
    change = log_of(conversation.pk)[-1]
    assert (change.seq, change.kind, change.actor_id) == (2, "member.added", None)
    members = Membership.objects.active().filter(conversation=conversation).select_related("user")
    conversation.refresh_from_db()
    assert change.payload == as_logged(
        {**member_payload(membership), "added_by": None, "conversation": conversation_payload(conversation, members)}
    )
    assert [m["user"]["id"] for m in change.payload["conversation"]["members"]] == [alice.pk, bob.pk, carol.pk]
    assert published == [("member.added", conversation.pk, 2, [f"conversation.{conversation.pk}", f"user.{carol.pk}"])]


def test_membership_deleted_with_the_orm_is_a_member_removed(room, published):
    conversation, alice, bob = room
    published.clear()
    Membership.objects.get(conversation=conversation, user=bob).delete()
    change = log_of(conversation.pk)[-1]
    assert (change.seq, change.kind) == (2, "member.removed")
    assert change.payload == {
        "user": {"id": bob.pk, "username": bob.username},
        "removed_by": None,
        "new_owner": None,
    }
    assert published == [("member.removed", conversation.pk, 2, [f"conversation.{conversation.pk}", f"user.{bob.pk}"])]


def test_the_owner_deleted_with_the_orm_passes_ownership_on(room):
    conversation, alice, bob = room
    Membership.objects.filter(conversation=conversation, user=alice).delete()
    assert log_of(conversation.pk)[-1].payload["new_owner"] == bob.pk
    assert Membership.objects.get(conversation=conversation, user=bob).role == "owner"


def test_removing_everyone_in_one_update_passes_ownership_along(room, make_user):
    conversation, alice, bob = room
    carol = make_user()
    add_member(actor=alice, conversation_id=conversation.pk, user_id=carol.pk)
    assert Membership.objects.filter(conversation=conversation, user__in=[alice, bob]).update(is_active=False) == 2
    removed = [c.payload for c in log_of(conversation.pk) if c.kind == "member.removed"]
    assert [(p["user"]["id"], p["new_owner"]) for p in removed] == [(alice.pk, bob.pk), (bob.pk, carol.pk)]
    assert Membership.objects.get(conversation=conversation, user=carol).role == "owner"


def test_is_active_off_and_on_again_is_a_removal_and_a_re_add(room):
    conversation, alice, bob = room
    membership = Membership.objects.get(conversation=conversation, user=bob)
    membership.is_active = False
    membership.save()
    membership.refresh_from_db()
    assert (membership.left_seq, membership.joined_seq) == (2, 1)

    again = Membership.objects.create(conversation=conversation, user=bob)  # the same row, reactivated
    assert again.pk == membership.pk
    membership.refresh_from_db()
    assert (membership.is_active, membership.joined_seq, membership.left_seq) == (True, 3, None)
    assert kinds(conversation.pk)[1:] == [(2, "member.removed"), (3, "member.added")]


def test_a_member_the_service_refuses_is_refused_the_same_way(room, make_user):
    conversation, alice, _ = room
    inactive = make_user(is_active=False)
    for user_id in (10**9, inactive.pk):
        before = snapshot(conversation.pk)
        by_service = refusal(
            lambda user_id=user_id: add_member(actor=alice, conversation_id=conversation.pk, user_id=user_id)
        )
        assert by_service == {"code": "invalid", "message": "No such user.", "field": "user_id"}
        assert refusal(
            lambda user_id=user_id: Membership.objects.create(conversation=conversation, user_id=user_id)
        ) == (by_service)
        assert snapshot(conversation.pk) == before


def test_a_direct_conversation_keeps_its_pair(room, make_user):
    _, alice, bob = room
    direct, _ = create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    carol = make_user()
    by_service = refusal(lambda: add_member(actor=alice, conversation_id=direct.pk, user_id=carol.pk))
    assert refusal(lambda: Membership.objects.create(conversation=direct, user=carol)) == by_service


def test_deleting_a_user_removes_them_from_their_conversations(room, make_user):
    conversation, alice, _ = room
    dave = make_user()
    add_member(actor=alice, conversation_id=conversation.pk, user_id=dave.pk)
    dave_id = dave.pk
    dave.delete()
    removed = log_of(conversation.pk)[-1]
    assert (removed.kind, removed.payload["user"]["id"]) == ("member.removed", dave_id)


def test_a_role_change_is_written_and_not_logged(room):
    conversation, _, bob = room
    assert Membership.objects.filter(conversation=conversation, user=bob).update(role="admin") == 1
    assert Membership.objects.get(conversation=conversation, user=bob).role == "admin"
    assert kinds(conversation.pk) == [(1, "conversation.created")]
    with pytest.raises(InvalidInput, match="role"):
        Membership.objects.filter(conversation=conversation, user=bob).update(role="emperor")


def test_a_conversation_built_with_the_orm_reaches_its_members(make_user, published):
    alice, bob = make_user(), make_user()
    with transaction.atomic():
        conversation = Conversation.objects.create(kind="group", title="built by a job", created_by=alice)
        Membership.objects.create(conversation=conversation, user=alice, role="owner")
        Membership.objects.create(conversation=conversation, user=bob)
        Message.objects.create(conversation=conversation, sender=alice, body="welcome")
        assert published == []  # nothing before commit
    assert kinds(conversation.pk) == [
        (1, "conversation.created"),
        (2, "member.added"),
        (3, "member.added"),
        (4, "message.created"),
    ]
    assert [p[2] for p in published] == [1, 2, 3, 4]
    assert list(Membership.objects.filter(conversation=conversation).values_list("joined_seq", flat=True)) == [2, 3]


# The QuerySet paths


def test_bulk_create_update_and_bulk_update_are_logged_row_by_row(room, make_user):
    conversation, alice, bob = room
    messages = Message.objects.bulk_create(
        [Message(conversation=conversation, sender=alice, body=f"imported {i}") for i in range(3)]
    )
    assert [m.seq for m in messages] == [2, 3, 4]
    assert Message.objects.filter(conversation=conversation, body__startswith="imported").update(body="redacted") == 3
    messages[0].refresh_from_db()
    messages[0].body = "fixed"
    assert Message.objects.bulk_update([messages[0]], ["body"]) == 1
    carol, dave = make_user(), make_user()
    Membership.objects.bulk_create([Membership(conversation=conversation, user=u) for u in (carol, dave)])
    assert Membership.objects.filter(user__in=[carol, dave]).update(is_active=False) == 2

    assert [kind for _, kind in kinds(conversation.pk)[1:]] == (
        ["message.created"] * 3 + ["message.edited"] * 4 + ["member.added"] * 2 + ["member.removed"] * 2
    )
    assert [c.seq for c in log_of(conversation.pk)] == list(range(1, 13))
    assert Message.objects.get(pk=messages[0].pk).version == 3


def test_what_cannot_be_logged_row_by_row_is_refused(room):
    conversation, alice, _ = room
    Message.objects.create(conversation=conversation, sender=alice, body="x")
    before = snapshot(conversation.pk)
    with pytest.raises(NotSupportedError, match="expressions"):
        Message.objects.update(body=F("client_msg_id"))
    with pytest.raises(NotSupportedError, match="change log"):
        Message.objects.update(version=7)
    with pytest.raises(NotSupportedError, match="change log"):
        Conversation.objects.update(last_seq=0)
    with pytest.raises(NotSupportedError, match="conflicts"):
        Message.objects.bulk_create([Message(conversation=conversation, sender=alice, body="y")], ignore_conflicts=True)
    assert snapshot(conversation.pk) == before


def test_a_data_migrations_historical_models_are_followed_on_save(room):
    conversation, alice, bob = room
    apps = MigrationExecutor(connection).loader.project_state().apps
    HistoricalMessage = apps.get_model("conversations", "Message")
    HistoricalConversation = apps.get_model("conversations", "Conversation")
    with transaction.atomic():  # a migration's RunPython runs in one
        message = HistoricalMessage.objects.create(conversation_id=conversation.pk, sender_id=bob.pk, body="migrated")
        renamed = HistoricalConversation.objects.get(pk=conversation.pk)
        renamed.title = "migrated"
        renamed.save()
    assert kinds(conversation.pk)[1:] == [(2, "message.created"), (3, "conversation.renamed")]
    assert log_of(conversation.pk)[1].payload == as_logged(message_payload(Message.objects.get(pk=message.pk)))


# PostgreSQL: the triggers and the receivers never both log a write.


@pytest.mark.postgres
def test_the_triggers_stand_aside_for_orm_writes_and_only_for_them(room):
    conversation, alice, bob = room
    with transaction.atomic():
        message = Message.objects.create(conversation=conversation, sender=alice, body="orm")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO conversations_message (conversation_id, sender_id, body) VALUES (%s, %s, 'sql')",
                [conversation.pk, bob.pk],
            )
        message.body = "orm, edited"
        message.save()
        message.delete()
    assert [(c.seq, c.kind, c.origin) for c in log_of(conversation.pk)[1:]] == [
        (2, "message.created", "app"),
        (3, "message.created", "sql"),
        (4, "message.edited", "app"),
        (5, "message.deleted", "app"),
    ]


@pytest.mark.postgres
def test_set_local_realtime_origin_app_silences_orm_writes_too(room, published):
    conversation, alice, _ = room
    published.clear()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL realtime.origin = 'app'")
        Message.objects.create(conversation=conversation, sender=alice, body="backfilled", seq=2)
        conversation.title = "quietly"
        conversation.save()
    assert kinds(conversation.pk) == [(1, "conversation.created")]
    assert published == []


@pytest.mark.postgres
def test_orm_writers_and_services_interleave_without_gaps(room):
    conversation, alice, bob = room
    per_thread, threads = 8, 8

    def write(i):
        for n in range(per_thread):
            if i % 2:
                send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"{i}-{n}", body="svc")
            else:
                message = Message.objects.create(conversation_id=conversation.pk, sender=bob, body="orm")
                if n % 3 == 0:
                    message.body = "orm, edited"
                    message.save()

    run_in_threads(threads, write)

    log = log_of(conversation.pk)
    assert [c.seq for c in log] == list(range(1, len(log) + 1))
    assert Conversation.objects.get(pk=conversation.pk).last_seq == len(log)
    created = [c for c in log if c.kind == "message.created"]
    assert len(created) == Message.objects.filter(conversation=conversation).count() == per_thread * threads
    assert sorted(c.message_id for c in created) == sorted(Message.objects.values_list("pk", flat=True))
