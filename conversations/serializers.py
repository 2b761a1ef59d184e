"""REST shapes of conversations, members, messages and the change log.

Output serializers read the dicts built by conversations.payloads, so the REST
API, the change log and live events describe things identically; the
serializers exist to document those shapes in the OpenAPI schema.
"""

from django.conf import settings
from rest_framework import serializers

from core.openapi import NotBlankValidator
from devices.serializers import UserSerializer

from .models import Change, Conversation, Membership
from .payloads import conversation_payload, message_payload
from .services.members import ADDABLE_ROLES

# Seqs are stored as 64-bit integers; a larger cursor is a client bug, not a crash.
MAX_SEQ = 2**63 - 1


def seq_field(**options):
    return serializers.IntegerField(min_value=0, max_value=MAX_SEQ, **options)


class WholePatchSerializer(serializers.Serializer):
    """A PATCH body that is validated whole: its required fields must be sent.

    drf-spectacular documents every PATCH body as partial (nothing required) by
    setting `partial` on the serializer; pinning it to False keeps the schema
    truthful about which fields are required.
    """

    @property
    def partial(self) -> bool:
        return False

    @partial.setter
    def partial(self, value) -> None:
        pass


# Output


class MemberSerializer(serializers.Serializer):
    user = UserSerializer()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    joined_at = serializers.DateTimeField()


class MessageSerializer(serializers.Serializer):
    """A message; a deleted one is a tombstone with an empty body and `deleted` true."""

    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="The conversation seq of the change that created the message.")
    sender = serializers.IntegerField(help_text="The sender's user id.")
    sender_device = serializers.IntegerField(allow_null=True, help_text="The device it was sent from, if known.")
    client_msg_id = serializers.CharField()
    body = serializers.CharField(allow_blank=True)
    reply_to = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(help_text="Send it back with an edit; it grows with each edit and the delete.")
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    deleted = serializers.BooleanField()
    deleted_at = serializers.DateTimeField(allow_null=True)


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    title = serializers.CharField(allow_blank=True)
    created_by = serializers.IntegerField(help_text="The creator's user id.")
    created_at = serializers.DateTimeField()
    last_seq = serializers.IntegerField(help_text="The seq of the conversation's latest change.")
    unread_count = serializers.IntegerField(help_text="Messages from others after read_seq, deletes excluded.")
    read_seq = serializers.IntegerField(help_text="How far the user has read (0 when never).")
    members = MemberSerializer(many=True, help_text="The current members.")
    last_message = MessageSerializer(allow_null=True)


def conversation_data(conversation, members, last_messages: dict) -> dict:
    """The API shape of a conversation annotated by `selectors.conversations_of`."""
    last_message = last_messages.get(conversation.last_message_id)
    return {
        **conversation_payload(conversation, members),
        "last_seq": conversation.last_seq,
        "unread_count": conversation.unread_count,
        "read_seq": conversation.read_seq,
        "last_message": message_payload(last_message) if last_message is not None else None,
    }


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Ascending by seq, tombstones included.")
    has_more = serializers.BooleanField(
        help_text="More messages exist in the direction asked: newer with `after`, older otherwise."
    )
    next_after = serializers.IntegerField(
        allow_null=True,
        help_text="Pass as `after` for the messages following this page: the last seq here "
        "(the `after` sent when the page is empty).",
    )
    next_before = serializers.IntegerField(
        allow_null=True,
        help_text="Pass as `before` for the messages preceding this page: the first seq here "
        "(the `before` sent when the page is empty).",
    )


def message_page_data(page, *, after=None, before=None) -> dict:
    items = page.items
    return {
        "results": [message_payload(m) for m in items],
        "has_more": page.has_more,
        "next_after": items[-1].seq if items else after,
        "next_before": items[0].seq if items else before,
    }


class ChangeSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    # A string, not an enum: clients must skip kinds they do not know, so new kinds can be added.
    kind = serializers.CharField(
        help_text="What changed: "
        + ", ".join(f"`{kind}`" for kind in Change.Kind.values)
        + ". Clients should skip kinds they do not know."
    )
    payload = serializers.DictField(help_text="The same payload the live event carried.")
    actor = serializers.IntegerField(source="actor_id", allow_null=True, help_text="Who made the change.")
    created_at = serializers.DateTimeField()


class ChangesPageSerializer(serializers.Serializer):
    changes = ChangeSerializer(many=True)
    has_more = serializers.BooleanField(help_text="More changes follow; ask again with after=last_seq.")
    last_seq = serializers.IntegerField(
        help_text="The seq of the last change returned (the `after` sent when none): the next `after`."
    )


def changes_page_data(page, *, after: int) -> dict:
    return {
        "changes": page.items,
        "has_more": page.has_more,
        "last_seq": page.items[-1].seq if page.items else after,
    }


# Input


class ConversationCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    title = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=settings.CONVERSATION_TITLE_MAX_CHARS,
        # Counted as sent: the service strips it, so the schema's maxLength is exact.
        trim_whitespace=False,
        help_text="Groups only; surrounding whitespace is dropped.",
    )
    member_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        default=list,
        help_text="The other members' user ids: exactly one for a direct conversation.",
    )


class ConversationRenameSerializer(WholePatchSerializer):
    """The new title; an empty one clears it."""

    title = serializers.CharField(
        allow_blank=True,
        max_length=settings.CONVERSATION_TITLE_MAX_CHARS,
        trim_whitespace=False,  # as for creating: counted as sent, stripped by the service
        help_text="Surrounding whitespace is dropped.",
    )


class MemberAddSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1)
    role = serializers.ChoiceField(choices=[(r, r) for r in ADDABLE_ROLES], default=Membership.Role.MEMBER)


class ConversationListQuerySerializer(serializers.Serializer):
    """The list's page: validated, so `offset=null` or `limit=0` is a 400 naming the field
    rather than silently the first page."""

    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Page size; default {settings.PAGE_SIZE_DEFAULT}, at most {settings.PAGE_SIZE_MAX} "
        "(a larger one is cut to that).",
    )
    offset = serializers.IntegerField(
        required=False, min_value=0, help_text="How many conversations to skip; default 0."
    )


class MessagePageQuerySerializer(serializers.Serializer):
    after = seq_field(required=False, help_text="Messages with a seq above this, oldest first.")
    before = seq_field(required=False, help_text="Messages with a seq below this (the page nearest to it).")
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Page size; default {settings.PAGE_SIZE_DEFAULT}, at most {settings.PAGE_SIZE_MAX}.",
    )

    def validate(self, attrs):
        if "after" in attrs and "before" in attrs:
            raise serializers.ValidationError({"before": "Give either after or before, not both."})
        return attrs


class ChangesQuerySerializer(serializers.Serializer):
    after = seq_field(default=0, help_text="Changes with a seq above this; 0 for the whole log.")
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Page size; default {settings.PAGE_SIZE_DEFAULT}, at most {settings.PAGE_SIZE_MAX}.",
    )


class MessageSendSerializer(serializers.Serializer):
    client_msg_id = serializers.CharField(
        max_length=settings.CLIENT_MSG_ID_MAX_CHARS,
        trim_whitespace=False,  # the same id as over the WebSocket, byte for byte
        validators=[NotBlankValidator()],
        help_text="Chosen by the client, unique per sender; a retry with the same id returns the original.",
    )
    body = serializers.CharField(
        max_length=settings.MESSAGE_BODY_MAX_CHARS, trim_whitespace=False, validators=[NotBlankValidator()]
    )
    reply_to = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class MessageEditSerializer(WholePatchSerializer):
    """The new body and the version it replaces."""

    body = serializers.CharField(
        max_length=settings.MESSAGE_BODY_MAX_CHARS, trim_whitespace=False, validators=[NotBlankValidator()]
    )
    version = serializers.IntegerField(min_value=1, help_text="The version the edit is based on.")


class UserSearchQuerySerializer(serializers.Serializer):
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=150,
        help_text="Part of the username, any case; empty or left out for everyone findable.",
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Page size; default and most {settings.USER_SEARCH_PAGE_SIZE}.",
    )


class UserSearchSerializer(serializers.Serializer):
    results = UserSerializer(many=True, help_text="By username.")
    has_more = serializers.BooleanField(help_text="More users match: narrow the search.")
