"""Conversations, their members, their messages and their change log.

The change log (`Change`) is the truth every device syncs from: each persistent
change in a conversation takes the conversation's next `seq` in the same
transaction as the write, under a row lock on the conversation, so the seqs of
one conversation commit in order with no gap. Live events are only a doorbell
that points into this log.

Conversations, memberships and messages are logged however they are written:
the services log their own writes; any other ORM write (save, create, delete,
and the QuerySet paths below) is logged by the receivers in `signals.py`. Their
`save()` runs in a transaction so the receivers log in the same one.
"""

from django.conf import settings
from django.db import NotSupportedError, models, router, transaction
from django.db.models import Q
from django.utils import timezone


class LoggedModel(models.Model):
    """A model whose ORM writes the change log records (see `signals.py`).

    `save()` runs in a transaction (a savepoint when nested), so the receivers'
    pre_save and post_save work (the conversation's row lock, the seq, the log
    entry) commits or rolls back with the row, and a refused write inside a
    caller's transaction leaves that transaction usable.
    """

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        from .changelog import in_logged_by_caller  # changelog imports this module

        if in_logged_by_caller():  # a service: it logs its writes, and runs in a transaction
            return super().save(*args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            return super().save(*args, **kwargs)

    save.alters_data = True


class LoggedQuerySet(models.QuerySet):
    """QuerySet writes the receivers would not see, made row by row outside the
    services so each row is logged like a save(); inside `logged_by_caller()` (the
    services, a purge) and after `SET LOCAL realtime.origin = 'app'` they are
    the plain bulk statements.

    * `bulk_create` saves each object (no `ignore_conflicts`/`update_conflicts`:
      a skipped row would leave a hole in the log);
    * `update` and `bulk_update` save each row with the new values; plain values
      only (an F() or other expression cannot be applied to a row in Python),
      and never the log's own columns (`log_fields`). An update of columns that
      no event carries (`unlogged_fields`) stays one statement;
    * `delete` goes through Django's collector, whose per-row signals the
      receivers follow (messages override it: a delete is a tombstone).
    """

    # Columns whose change no event carries: update() writes them in one statement.
    unlogged_fields: frozenset = frozenset()
    # Columns the log owns (seqs, versions): update() refuses them outside the services.
    log_fields: frozenset = frozenset()
    # The order rows are written in: by conversation, the order the locks are taken.
    lock_order: tuple = ("pk",)

    def _logged_by_receivers(self) -> bool:
        from .changelog import writes_logged_elsewhere

        return not writes_logged_elsewhere(self.db)

    def _create_one(self, obj):
        obj.save(force_insert=True, using=self.db)
        return obj

    def bulk_create(self, objs, batch_size=None, **options):
        self._for_write = True
        with transaction.atomic(using=self.db):
            if not self._logged_by_receivers():
                return super().bulk_create(objs, batch_size, **options)
            if options.get("ignore_conflicts") or options.get("update_conflicts"):
                raise NotSupportedError(
                    f"{self.model.__name__}.objects.bulk_create() outside the services saves row by row, "
                    "so each row is logged: conflicts cannot be ignored or turned into updates."
                )
            return [self._create_one(obj) for obj in objs]

    bulk_create.alters_data = True

    def _check_row_values(self, values: dict) -> None:
        names = {self.model._meta.get_field(name).name for name in values}
        refused = sorted(names & self.log_fields)
        if refused:
            raise NotSupportedError(f"{', '.join(refused)} belong to the change log; only the services set them.")
        if any(hasattr(value, "resolve_expression") for value in values.values()):
            raise NotSupportedError(
                f"Outside the services, {self.model.__name__} rows are updated one by one so each change "
                "is logged: give plain values, not expressions."
            )

    def update(self, **kwargs):
        names = {self.model._meta.get_field(name).name for name in kwargs}
        if names <= self.unlogged_fields:
            return super().update(**kwargs)
        if self.query.is_sliced:
            raise TypeError("Cannot update a query once a slice has been taken.")
        self._for_write = True
        with transaction.atomic(using=self.db):
            if not self._logged_by_receivers():
                return super().update(**kwargs)
            self._check_row_values(kwargs)
            rows = list(self.order_by(*self.lock_order))
            for row in rows:
                for name, value in kwargs.items():
                    setattr(row, name, value)
                row.save(update_fields=list(kwargs), using=self.db)
            return len(rows)

    update.alters_data = True

    def bulk_update(self, objs, fields, batch_size=None):
        self._for_write = True
        with transaction.atomic(using=self.db):
            if not self._logged_by_receivers():
                return super().bulk_update(objs, fields, batch_size=batch_size)
            objs = list(objs)
            self._check_row_values({name: getattr(obj, name) for obj in objs for name in fields})
            for obj in sorted(objs, key=self._lock_key):
                obj.save(update_fields=list(fields), using=self.db)
            return len(objs)

    bulk_update.alters_data = True

    def _lock_key(self, obj):
        return tuple(
            getattr(obj, self.model._meta.get_field(name.lstrip("-")).attname) or 0 for name in self.lock_order
        )


class ConversationQuerySet(LoggedQuerySet):
    log_fields = frozenset({"last_seq"})
    unlogged_fields = frozenset({"created_at"})


class Conversation(LoggedModel):
    class Kind(models.TextChoices):
        DIRECT = "direct", "Direct"
        GROUP = "group", "Group"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=settings.CONVERSATION_TITLE_MAX_CHARS, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="created_conversations"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The seq of the last change; the next change takes last_seq + 1 under a row lock.
    last_seq = models.BigIntegerField(default=0)
    # "<lower user id>:<higher user id>" for direct conversations, so a pair has one.
    direct_key = models.CharField(max_length=41, null=True, blank=True, editable=False)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["direct_key"], name="one_direct_conversation_per_pair"),
            models.CheckConstraint(
                condition=(Q(kind="direct", direct_key__isnull=False) | Q(kind="group", direct_key__isnull=True)),
                name="direct_key_only_on_direct",
            ),
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="conversation_last_seq_non_negative"),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.get_kind_display()} #{self.pk}"

    @staticmethod
    def direct_key_for(user_id_a: int, user_id_b: int) -> str:
        low, high = sorted((user_id_a, user_id_b))
        return f"{low}:{high}"


class MembershipQuerySet(LoggedQuerySet):
    log_fields = frozenset({"joined_seq", "left_seq", "left_at"})
    lock_order = ("conversation_id", "pk")

    def active(self):
        return self.filter(is_active=True)

    def _create_one(self, obj):
        """A user removed earlier keeps an inactive row (one per conversation and
        user): adding them again reactivates it, as `add_member` does."""
        if obj.is_active and obj.pk is None:
            removed = (
                Membership._base_manager.using(self.db)
                .filter(conversation_id=obj.conversation_id, user_id=obj.user_id, is_active=False)
                .values_list("pk", flat=True)
                .first()
            )
            if removed is not None:
                obj.pk = removed
                obj._state.adding = False
                obj.save(force_update=True, using=self.db)
                return obj
        return super()._create_one(obj)

    def create(self, **kwargs):
        self._for_write = True
        with transaction.atomic(using=self.db):
            if not self._logged_by_receivers():
                return super().create(**kwargs)
            return self._create_one(self.model(**kwargs))

    create.alters_data = True


class Membership(LoggedModel):
    """A user's place in a conversation.

    A removed member keeps the row with `is_active` off and `left_seq` set: the
    catch-up of that user's devices stops at the removal. Re-adding reactivates it.
    """

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    joined_at = models.DateTimeField(default=timezone.now)
    joined_seq = models.BigIntegerField(default=0)
    left_at = models.DateTimeField(null=True, blank=True)
    left_seq = models.BigIntegerField(null=True, blank=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["conversation_id", "joined_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="one_membership_per_user"),
        ]
        indexes = [models.Index(fields=["user", "is_active"], name="membership_user_active_idx")]

    def __str__(self) -> str:
        return f"{self.user} in {self.conversation} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class MessageQuerySet(LoggedQuerySet):
    log_fields = frozenset({"seq", "version", "edited_at"})
    unlogged_fields = frozenset({"sender_device", "reply_to"})
    lock_order = ("conversation_id", "seq")

    def delete(self):
        """Outside the services, each message becomes a tombstone (see `Message.delete`)."""
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        self._for_write = True
        with transaction.atomic(using=self.db):
            if not self._logged_by_receivers():
                return super().delete()
            for message in self.order_by(*self.lock_order):
                message.delete(using=self.db)
        self._result_cache = None
        return 0, {}

    delete.alters_data = True


class Message(LoggedModel):
    """A message. A delete leaves a tombstone (deleted_at set, body cleared).

    That holds for the ORM too: outside the services, `delete()` (of a message
    or a QuerySet of them) keeps the row as a tombstone, logged and announced
    like `delete_message`, and reports 0 rows deleted. Inside
    `logged_by_caller()`, or after `SET LOCAL realtime.origin = 'app'`, it is a
    real, silent delete (a purge).
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sent_messages")
    sender_device = models.ForeignKey(
        "devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="sent_messages"
    )
    client_msg_id = models.CharField(max_length=settings.CLIENT_MSG_ID_MAX_CHARS)
    body = models.TextField(max_length=settings.MESSAGE_BODY_MAX_CHARS, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    # The seq of the change that created the message; unread counts compare against it.
    seq = models.BigIntegerField()
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["conversation_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["sender", "client_msg_id"], name="client_msg_id_unique_per_sender"),
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique_per_conversation"),
        ]

    def __str__(self) -> str:
        if self.is_deleted:
            return f"Message #{self.pk} (deleted)"
        excerpt = self.body if len(self.body) <= 40 else self.body[:39] + "…"
        return f"Message #{self.pk}: {excerpt}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def delete(self, using=None, keep_parents=False):
        from .changelog import writes_logged_elsewhere  # changelog imports this module

        if self.pk is None:
            return super().delete(using=using, keep_parents=keep_parents)  # Django's error
        using = using or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            if writes_logged_elsewhere(using):
                return super().delete(using=using, keep_parents=keep_parents)
            # A tombstone: the receivers see deleted_at set and log message.deleted.
            self.deleted_at = timezone.now()
            self.save(update_fields=["deleted_at"], using=using)
        return 0, {}

    delete.alters_data = True


class MessageEdit(models.Model):
    """One earlier version of a message's body, kept when an edit replaces it."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    version = models.PositiveIntegerField()
    body = models.TextField()
    edited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    edited_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["message", "version"], name="one_edit_per_message_version"),
        ]

    def __str__(self) -> str:
        return f"Message #{self.message_id}, version {self.version}"


class Change(models.Model):
    """One entry of a conversation's change log: what changed, at which seq."""

    class Kind(models.TextChoices):
        CONVERSATION_CREATED = "conversation.created"
        CONVERSATION_RENAMED = "conversation.renamed"
        MEMBER_ADDED = "member.added"
        MEMBER_REMOVED = "member.removed"
        MESSAGE_CREATED = "message.created"
        MESSAGE_EDITED = "message.edited"
        MESSAGE_DELETED = "message.deleted"

    class Origin(models.TextChoices):
        APP = "app", "App"
        SQL = "sql", "Plain SQL"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="changes")
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=40, choices=Kind.choices)
    payload = models.JSONField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes")
    created_at = models.DateTimeField(default=timezone.now)
    # Who wrote the change: the app ("app": a service, or the ORM receivers of
    # signals.py; published by the app after commit) or a PostgreSQL trigger
    # reacting to plain SQL on the messages table ("sql", published by the
    # `listen_changes` process). See migration 0002.
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.APP, editable=False)

    class Meta:
        ordering = ["conversation_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="change_seq_unique_per_conversation"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="change_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}@{self.seq} {self.kind}"
