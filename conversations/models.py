"""Conversations, their members, their messages and their change log.

The change log (`Change`) is the truth every device syncs from: each persistent
change in a conversation takes the conversation's next `seq` in the same
transaction as the write, under a row lock on the conversation, so the seqs of
one conversation commit in order with no gap. Live events are only a doorbell
that points into this log.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Conversation(models.Model):
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


class MembershipQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Membership(models.Model):
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


class Message(models.Model):
    """A message. A delete leaves a tombstone (deleted_at set, body cleared)."""

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
    # Who wrote the change: the app's services ("app", published by the app after
    # commit) or a PostgreSQL trigger reacting to plain SQL on the messages table
    # ("sql", published by the `listen_changes` process). See migration 0002.
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.APP, editable=False)

    class Meta:
        ordering = ["conversation_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="change_seq_unique_per_conversation"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="change_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}@{self.seq} {self.kind}"
