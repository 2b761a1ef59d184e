"""ORM writes go live: receivers that log and publish what the services did not write.

A Django developer's own code (a support inbox creating messages from email, a
job adding members, the shell, a data migration) writes conversations,
memberships and messages with the ORM. These receivers give such a write what
a service gives its own: the conversation's row lock, the next seq, a change
in the log in the same transaction with the payload the service would log, and
the live event after commit. Devices cannot tell the two apart, except that
`edited_by`, `deleted_by`, `renamed_by`, `added_by` and `removed_by` are null
("made outside the app", as for plain SQL) and there is no actor.

Who logs which write (the table is in docs/architecture.md):

* **The services** log their own writes. They run inside
  `changelog.logged_by_caller()`, a ContextVar flag the receivers check
  first, at no cost. The alternative, noticing that the change is already in
  the log, does not work: a service saves its row before it appends the
  change, so at post_save time the log does not have it yet, and telling
  "not yet" from "never" would take a query per write and guesswork.
* **Other ORM writes** are logged here: `save()` (so `create`,
  `get_or_create`, `update_or_create`), `delete()` of an object or a QuerySet
  (the collector sends per-row signals to models with delete receivers), and,
  through the models' QuerySet, `bulk_create`, `update` and `bulk_update`,
  which save row by row outside the services (models.py). Writes through a
  data migration's historical models are followed for save() (the receivers
  match models by label); their bulk paths and deletes are not.
* **Plain SQL** on messages is logged by the PostgreSQL triggers. A receiver
  that writes a message marks the transaction (`realtime.origin = 'app'`)
  for the length of that one write, so the triggers stand aside, and puts it
  back after, so a later plain-SQL write in the same transaction is still
  theirs. A transaction that set `realtime.origin = 'app'` itself opted out
  of logging: the receivers stand aside too.

Every write is one transaction: the models' `save()` runs in `atomic`, and so
does Django's delete collector, so pre_* and post_* receivers log in the
transaction of the row, and a refused or failed write leaves nothing behind.
Locks follow the services' order: the conversation's row first, then the row.

What each write means (the services' rules, with no acting user: rules about
who may do what do not apply, rules about the data do, with the services'
errors):

* Message, new: a send. Body and client_msg_id checked as `send_message`
  checks them (an empty client_msg_id becomes `orm-<uuid>`); the sender must
  be an active member (NotFound otherwise, as the service says);
  `reply_to` must be in the conversation; seq, version and edited_at are set
  here. `message.created`.
* Message, body changed: an edit, as `edit_message`: the instance's `version`
  is the version it was based on (a stale one is a VersionConflict), the old
  body goes to the edit history, version + 1, `message.edited`. The same body
  is no edit.
* Message, deleted_at set, or `delete()`: the tombstone `delete_message`
  leaves (models.py turns `delete()` into it): body erased, edit history
  erased, earlier payloads redacted, version + 1, `message.deleted`. A
  tombstone is final: changing its body or clearing deleted_at is
  MessageDeleted. A real row delete (the base manager) is logged as the same
  `message.deleted`, without a row to point to.
* Message, other columns: written, not logged (no event carries them);
  conversation and seq cannot change.
* Conversation, new: `conversation.created` at seq 1 with its members (none
  yet, usually: each membership created after it is a `member.added`).
  Title checked as `create_conversation` checks it.
* Conversation, title changed: `conversation.renamed` (a group's only, as
  `rename_conversation`). Kind cannot change; `last_seq` is the log's and is
  always written back as the log has it, so a stale instance cannot rewind it.
  Deleting a conversation deletes its log with it: nothing is logged or
  published (there is no event for it); devices find it gone on their next
  sync.
* Membership, new and active, or is_active turned on: `member.added`, as
  `add_member` (the user must exist and be active, the role be a known one; a
  direct conversation takes only its two users). `Membership.objects.create`
  of a user removed earlier reactivates their row, as `add_member` does.
* Membership, is_active turned off: `member.removed`, as `remove_member`
  (ownership passes on when the owner leaves; not in a direct conversation).
* Membership, `delete()`: the row is gone; an active member's removal is
  logged as `member.removed` (their devices then find the conversation gone
  on sync rather than catching up to the removal). Deleted with their user,
  too.
* Membership, other columns (role): written, not logged.
* Raw saves (loaddata fixtures) are written as they are, not logged.
"""

import uuid
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.utils import timezone

from core.errors import InvalidInput, MessageDeleted, NotFound, VersionConflict

from .access import require_group
from .changelog import (
    Claim,
    append_change,
    claim_write,
    lock_conversation,
    receivers_stand_aside,
    record_change,
    redact_logged_bodies,
    release_write,
    take_next_seq,
)
from .models import Change, Conversation, Membership, Message, MessageEdit
from .payloads import conversation_payload, member_payload, message_payload, user_payload
from .selectors import members_of
from .services.members import pass_ownership
from .validation import clean_body, clean_client_msg_id, clean_title, is_id

PENDING = "_changelog_pending"  # set on the instance by pre_*, taken by post_*
Kind = Change.Kind


@dataclass
class Pending:
    """What a pre_* receiver found, for its post_* receiver to log."""

    claim: Claim
    kind: str | None = None  # None: nothing to log
    conversation: Conversation | None = None  # row-locked
    seq: int | None = None  # taken before the row was written (it holds it)
    managed: tuple = ()  # columns set here that the save's update_fields may leave out
    data: dict = field(default_factory=dict)


def _label(model) -> str:
    return model._meta.concrete_model._meta.label_lower


def _as(model, instance):
    """`instance` as an instance of the app's model: a data migration's
    historical instance has the columns but not the methods."""
    if isinstance(instance, model):
        return instance
    copy = model(**{f.attname: getattr(instance, f.attname) for f in model._meta.concrete_fields})
    copy._state.adding, copy._state.db = False, instance._state.db
    return copy


def _writer(update_fields, instance):
    """writes(name): whether this save writes that column."""
    if update_fields is None:
        return lambda name: True
    opts = type(instance)._meta
    return lambda name: bool({opts.get_field(name).name, opts.get_field(name).attname} & set(update_fields))


def _keep(instance, stored, *names) -> None:
    """The stored values of columns the log owns, so a stale instance cannot undo them."""
    for name in names:
        setattr(instance, name, getattr(stored, name))


def _write_managed(instance, update_fields, pending: Pending) -> None:
    """Write the columns set here that a save(update_fields=...) left out."""
    writes = _writer(update_fields, instance)
    missing = [name for name in pending.managed if not writes(name)]
    if missing:
        model = HANDLERS[_label(type(instance))].model
        model._base_manager.filter(pk=instance.pk).update(**{name: getattr(instance, name) for name in missing})


def _locked_row(model, pk):
    """(the row's conversation, row-locked; the row read under that lock), or (None, None)."""
    if pk is None:
        return None, None
    conversation_id = model._base_manager.filter(pk=pk).values_list("conversation_id", flat=True).first()
    if conversation_id is None:
        return None, None
    conversation = lock_conversation(conversation_id)
    return conversation, model._base_manager.filter(pk=pk).first()


class MessageWrites:
    model = Message
    mark_on_save = mark_on_delete = True  # the triggers on messages must stand aside

    def before_save(self, message, update_fields, claim) -> Pending:
        conversation, stored = _locked_row(Message, message.pk)
        if stored is None:
            return self._send(message, claim)
        writes = _writer(update_fields, message)
        if (writes("conversation") and message.conversation_id != stored.conversation_id) or (
            writes("seq") and message.seq != stored.seq
        ):
            raise InvalidInput("A message's conversation and seq cannot change.", field="conversation")
        body_changes = writes("body") and message.body != stored.body
        if stored.deleted_at is not None:  # a tombstone is final
            if body_changes or (writes("deleted_at") and message.deleted_at is None):
                raise MessageDeleted(current_version=stored.version)
            _keep(message, stored, "body", "version", "edited_at", "deleted_at")
            return Pending(claim)
        if writes("deleted_at") and message.deleted_at is not None:
            message.body, message.version, message.edited_at = "", stored.version + 1, stored.edited_at
            return Pending(claim, Kind.MESSAGE_DELETED, conversation, managed=("body", "version", "edited_at"))
        _keep(message, stored, "deleted_at")
        if body_changes:
            message.body = clean_body(message.body)
            if message.version != stored.version:
                raise VersionConflict(current_version=stored.version, current_body=stored.body)
            message.version, message.edited_at = stored.version + 1, timezone.now()
            return Pending(
                claim,
                Kind.MESSAGE_EDITED,
                conversation,
                managed=("version", "edited_at"),
                data={"version": stored.version, "body": stored.body},
            )
        _keep(message, stored, "version", "edited_at")
        return Pending(claim)

    def _send(self, message, claim) -> Pending:
        message.body = clean_body(message.body)
        message.client_msg_id = (
            clean_client_msg_id(message.client_msg_id) if message.client_msg_id else f"orm-{uuid.uuid4()}"
        )
        if message.deleted_at is not None:
            raise InvalidInput("A new message cannot be deleted.", field="deleted_at")
        if message.reply_to_id is not None and not is_id(message.reply_to_id):
            raise InvalidInput("reply_to must be a message id.", field="reply_to")
        conversation = lock_conversation(message.conversation_id)
        sender_is_member = Membership._base_manager.filter(
            conversation_id=conversation.pk, user_id=message.sender_id, is_active=True
        ).exists()
        if not sender_is_member:
            raise NotFound("Conversation not found.")  # what send_message says to a non-member
        if (
            message.reply_to_id is not None
            and not Message._base_manager.filter(pk=message.reply_to_id, conversation_id=conversation.pk).exists()
        ):
            raise InvalidInput("reply_to is not a message of this conversation.", field="reply_to")
        message.seq = take_next_seq(conversation)
        message.version, message.edited_at = 1, None
        return Pending(claim, Kind.MESSAGE_CREATED, conversation, seq=message.seq)

    def after_save(self, message, update_fields, pending: Pending) -> None:
        _write_managed(message, update_fields, pending)
        message = _as(Message, message)
        conversation = pending.conversation
        if pending.kind == Kind.MESSAGE_CREATED:
            payload = message_payload(message)
            record_change(conversation, pending.seq, pending.kind, payload, actor=message.sender_id, message=message)
        elif pending.kind == Kind.MESSAGE_EDITED:
            MessageEdit.objects.create(
                message_id=message.pk, version=pending.data["version"], body=pending.data["body"], edited_by=None
            )
            append_change(conversation, pending.kind, {**message_payload(message), "edited_by": None}, message=message)
        else:
            MessageEdit.objects.filter(message_id=message.pk).delete()
            redact_logged_bodies(message.pk)
            append_change(conversation, pending.kind, {**message_payload(message), "deleted_by": None}, message=message)

    def before_delete(self, message, claim) -> Pending:
        """A real row delete (the base manager; `delete()` itself leaves a tombstone)."""
        conversation, stored = _locked_row(Message, message.pk)
        if stored is None or stored.deleted_at is not None:
            return Pending(claim)  # a purge of a tombstone: the log already says deleted
        redact_logged_bodies(stored.pk)  # now: the collector unlinks the log rows next
        stored.body, stored.version, stored.deleted_at = "", stored.version + 1, timezone.now()
        payload = {**message_payload(stored), "deleted_by": None}
        return Pending(claim, Kind.MESSAGE_DELETED, conversation, data={"payload": payload})

    def after_delete(self, message, pending: Pending) -> None:
        append_change(pending.conversation, pending.kind, pending.data["payload"])


def _check_new_member(conversation, user_id, role) -> None:
    """The data rules of `add_member` (who may add is for the services to say)."""
    if role not in Membership.Role.values:
        raise InvalidInput(f"role must be one of {Membership.Role.values}.", field="role")
    if not is_id(user_id) or not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        raise InvalidInput("No such user.", field="user_id")
    if conversation.kind == Conversation.Kind.DIRECT and str(user_id) not in conversation.direct_key.split(":"):
        require_group(conversation, "have members added")


class MembershipWrites:
    model = Membership
    mark_on_save = mark_on_delete = False  # no triggers on memberships

    def before_save(self, membership, update_fields, claim) -> Pending:
        conversation, stored = _locked_row(Membership, membership.pk)
        if stored is None:
            conversation = lock_conversation(membership.conversation_id)
            if not membership.is_active:
                return Pending(claim)  # an inactive row adds nobody
            _check_new_member(conversation, membership.user_id, membership.role)
            membership.joined_seq = take_next_seq(conversation)
            membership.left_at = membership.left_seq = None
            return Pending(claim, Kind.MEMBER_ADDED, conversation, seq=membership.joined_seq)
        writes = _writer(update_fields, membership)
        if (writes("conversation") and membership.conversation_id != stored.conversation_id) or (
            writes("user") and membership.user_id != stored.user_id
        ):
            raise InvalidInput("A membership's conversation and user cannot change.", field="conversation")
        role = membership.role if writes("role") else stored.role
        if role not in Membership.Role.values:
            raise InvalidInput(f"role must be one of {Membership.Role.values}.", field="role")
        if writes("is_active") and membership.is_active and not stored.is_active:
            _check_new_member(conversation, stored.user_id, role)
            membership.joined_seq = take_next_seq(conversation)
            membership.joined_at, membership.left_at, membership.left_seq = timezone.now(), None, None
            managed = ("joined_seq", "joined_at", "left_at", "left_seq")
            return Pending(claim, Kind.MEMBER_ADDED, conversation, seq=membership.joined_seq, managed=managed)
        _keep(membership, stored, "joined_seq")
        if writes("is_active") and not membership.is_active and stored.is_active:
            require_group(conversation, "have members removed")
            membership.left_at, membership.left_seq = timezone.now(), take_next_seq(conversation)
            managed = ("left_at", "left_seq")
            # The role as stored when it is not written: a row loaded before an
            # earlier removal made it the owner must still pass ownership on.
            return Pending(
                claim, Kind.MEMBER_REMOVED, conversation, seq=membership.left_seq, managed=managed, data={"role": role}
            )
        _keep(membership, stored, "left_at", "left_seq")
        return Pending(claim)

    def after_save(self, membership, update_fields, pending: Pending) -> None:
        _write_managed(membership, update_fields, pending)
        membership = _as(Membership, membership)
        conversation = pending.conversation
        if pending.kind == Kind.MEMBER_ADDED:
            payload = {
                **member_payload(membership),
                "added_by": None,
                "conversation": conversation_payload(conversation, members_of(conversation.pk)),
            }
        else:
            payload = self._removal(conversation, membership.user, pending.data["role"])
        record_change(conversation, pending.seq, pending.kind, payload)

    def _removal(self, conversation, user, role) -> dict:
        new_owner = None
        if role == Membership.Role.OWNER:
            with receivers_stand_aside():  # a role change: part of this change, not one of its own
                new_owner = pass_ownership(conversation)
        return {"user": user_payload(user), "removed_by": None, "new_owner": new_owner.user_id if new_owner else None}

    def before_delete(self, membership, claim) -> Pending:
        conversation, stored = _locked_row(Membership, membership.pk)
        if stored is None or not stored.is_active:
            return Pending(claim)  # a removed member's row: their removal is logged already
        return Pending(claim, Kind.MEMBER_REMOVED, conversation, data={"user": stored.user, "role": stored.role})

    def after_delete(self, membership, pending: Pending) -> None:
        # The row is gone by now, so the next owner is chosen among the others.
        seq = take_next_seq(pending.conversation)
        payload = self._removal(pending.conversation, pending.data["user"], pending.data["role"])
        record_change(pending.conversation, seq, pending.kind, payload)


class ConversationWrites:
    model = Conversation
    mark_on_save = False
    # Deleting a conversation deletes its messages: the triggers must not turn
    # those row deletes into tombstones (and log them) first.
    mark_on_delete = True

    def before_save(self, conversation, update_fields, claim) -> Pending:
        exists = conversation.pk is not None and Conversation._base_manager.filter(pk=conversation.pk).exists()
        if not exists:
            if conversation.kind not in Conversation.Kind.values:
                raise InvalidInput(f"kind must be one of {Conversation.Kind.values}.", field="kind")
            conversation.title = clean_title(conversation.title)
            if conversation.kind == Conversation.Kind.DIRECT and conversation.title:
                raise InvalidInput("A direct conversation has no title.", field="title")
            conversation.last_seq = 0
            return Pending(claim, Kind.CONVERSATION_CREATED)
        locked = lock_conversation(conversation.pk)
        writes = _writer(update_fields, conversation)
        if (writes("kind") and conversation.kind != locked.kind) or (
            writes("direct_key") and conversation.direct_key != locked.direct_key
        ):
            raise InvalidInput("A conversation's kind cannot change.", field="kind")
        conversation.last_seq = locked.last_seq
        if writes("title"):
            conversation.title = clean_title(conversation.title)
            if conversation.title != locked.title:
                require_group(locked, "be renamed")
                return Pending(claim, Kind.CONVERSATION_RENAMED, locked, data={"previous_title": locked.title})
        return Pending(claim)

    def after_save(self, conversation, update_fields, pending: Pending) -> None:
        if pending.kind == Kind.CONVERSATION_CREATED:
            created = _as(Conversation, conversation)
            payload = conversation_payload(created, list(members_of(created.pk)))
            append_change(created, pending.kind, payload, actor=created.created_by_id)
            conversation.last_seq = created.last_seq
        else:
            locked = pending.conversation
            payload = {
                "title": conversation.title,
                "previous_title": pending.data["previous_title"],
                "renamed_by": None,
            }
            append_change(locked, pending.kind, payload)
            conversation.last_seq = locked.last_seq

    def before_delete(self, conversation, claim) -> Pending:
        return Pending(claim)  # nothing to log: the log goes with the conversation

    def after_delete(self, conversation, pending: Pending) -> None:
        pass


HANDLERS = {_label(handler.model): handler for handler in (MessageWrites(), MembershipWrites(), ConversationWrites())}


def _deleting_a_conversation(origin) -> bool:
    """Whether a delete began at a conversation: its members and messages go with it."""
    if isinstance(origin, models.QuerySet):
        return _label(origin.model) == _label(Conversation)
    return isinstance(origin, models.Model) and _label(type(origin)) == _label(Conversation)


def before_save(sender, instance, raw=False, using=None, update_fields=None, **kwargs):
    handler = HANDLERS.get(_label(sender))
    if handler is None:
        return
    instance.__dict__.pop(PENDING, None)  # left by a save that failed
    if raw:
        return  # loaddata: fixtures are written as they are
    claim = claim_write(using, mark=handler.mark_on_save)
    if claim is not None:
        instance.__dict__[PENDING] = handler.before_save(instance, update_fields, claim)


def after_save(sender, instance, created=False, raw=False, using=None, update_fields=None, **kwargs):
    pending = instance.__dict__.pop(PENDING, None)
    if pending is None:
        return
    if pending.kind is not None:
        HANDLERS[_label(sender)].after_save(instance, update_fields, pending)
    release_write(pending.claim)


def before_delete(sender, instance, using=None, origin=None, **kwargs):
    handler = HANDLERS[_label(sender)]
    instance.__dict__.pop(PENDING, None)
    if handler.model is not Conversation and _deleting_a_conversation(origin):
        return
    claim = claim_write(using, mark=handler.mark_on_delete)
    if claim is not None:
        instance.__dict__[PENDING] = handler.before_delete(instance, claim)


def after_delete(sender, instance, using=None, origin=None, **kwargs):
    pending = instance.__dict__.pop(PENDING, None)
    if pending is None:
        return
    if pending.kind is not None:
        HANDLERS[_label(sender)].after_delete(instance, pending)
    release_write(pending.claim)


def connect() -> None:
    """Called from the app's ready(). Saves are followed for every sender (so a data
    migration's historical models are too, matched by label); deletes only for the
    three models, since a delete receiver for every model would cost every model
    Django's fast (signal-free) deletes."""
    pre_save.connect(before_save, dispatch_uid="conversations.signals.before_save")
    post_save.connect(after_save, dispatch_uid="conversations.signals.after_save")
    for model in (Conversation, Membership, Message):
        pre_delete.connect(before_delete, sender=model, dispatch_uid=f"conversations.signals.before_delete.{model}")
        post_delete.connect(after_delete, sender=model, dispatch_uid=f"conversations.signals.after_delete.{model}")
