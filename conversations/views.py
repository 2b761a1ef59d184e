"""REST views of conversations, members, messages and the change log.

Each view parses its input, calls a service or selector and serializes the
result. Membership checks live in the selectors and services, which raise
NotFound for a conversation the caller is not in, exactly as for a missing one.
"""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_responses
from devices.authentication import request_device

from . import selectors, services
from .payloads import member_payload, message_payload
from .serializers import (
    ChangesPageSerializer,
    ChangesQuerySerializer,
    ConversationCreateSerializer,
    ConversationListQuerySerializer,
    ConversationRenameSerializer,
    ConversationSerializer,
    MemberAddSerializer,
    MemberSerializer,
    MessageEditSerializer,
    MessagePageQuerySerializer,
    MessagePageSerializer,
    MessageSendSerializer,
    MessageSerializer,
    UserSearchQuerySerializer,
    UserSearchSerializer,
    changes_page_data,
    conversation_data,
    message_page_data,
)


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_of(request) -> dict:
    """The query string as a plain dict (the last value of a repeated name), so an
    empty value such as `offset=` is refused as the schema says, where DRF reading a
    QueryDict would take it, as it does a form's empty input, for no value at all."""
    return request.query_params.dict()


def conversation_body(user, conversation_id: int) -> dict:
    conversation = selectors.conversation_for(user, conversation_id)
    members = list(selectors.members_of(conversation.pk))
    last_messages = selectors.messages_by_id([conversation.last_message_id])
    return ConversationSerializer(conversation_data(conversation, members, last_messages)).data


def message_body(message) -> dict:
    return MessageSerializer(message_payload(message)).data


class UserSearchView(APIView):
    @extend_schema(
        operation_id="users_search",
        summary="Find users to start a conversation with",
        description=(
            "Active users other than you whose username contains `search` (any case), by username. "
            "Whom it finds is a server setting (USER_SEARCH_SCOPE): everyone (`all`, the default) or only "
            "the users who already share a conversation with you (`shared`)."
        ),
        parameters=[UserSearchQuerySerializer],
        responses={200: UserSearchSerializer, **error_responses(400)},
    )
    def get(self, request):
        query = validated(UserSearchQuerySerializer, query_of(request))
        page = selectors.users_findable_by(request.user, search=query.get("search", ""), limit=query.get("limit"))
        return Response(UserSearchSerializer({"results": page.items, "has_more": page.has_more}).data)


class ConversationPagination(LimitOffsetPagination):
    default_limit = settings.PAGE_SIZE_DEFAULT
    max_limit = settings.PAGE_SIZE_MAX


class ConversationListView(APIView):
    pagination_class = ConversationPagination

    @extend_schema(
        operation_id="conversations_list",
        summary="List my conversations",
        description="The user's conversations, most recent activity first, with unread counts and last message.",
        parameters=[ConversationListQuerySerializer],
        responses={200: ConversationSerializer(many=True), **error_responses(400)},
    )
    def get(self, request):
        validated(ConversationListQuerySerializer, query_of(request))
        paginator = self.pagination_class()
        conversations = selectors.with_active_members(selectors.conversations_of(request.user))
        page = paginator.paginate_queryset(conversations, request, view=self)
        last_messages = selectors.messages_by_id([c.last_message_id for c in page])
        data = [conversation_data(c, c.active_members, last_messages) for c in page]
        return paginator.get_paginated_response(ConversationSerializer(data, many=True).data)

    @extend_schema(
        operation_id="conversations_create",
        summary="Create a conversation",
        description=(
            "A group gets the creator as owner. A direct conversation is one per pair of users: "
            "asking for an existing one returns it with 200 instead of 201."
        ),
        request=ConversationCreateSerializer,
        responses={
            201: ConversationSerializer,
            200: ConversationSerializer,
            **error_responses(
                400,
                415,
                429,
                notes={
                    400: "Also when a member id is not an active user (`field`: `member_ids`), or a direct conversation "
                    "does not name exactly one user other than you (`member_ids`) or has a title (`title`).",
                    429: "`rate_limited`: a user to add was added by others to MEMBER_ADDS_PER_HOUR conversations "
                    "in the last hour (`field`: `member_ids`).",
                },
            ),
        },
    )
    def post(self, request):
        data = validated(ConversationCreateSerializer, request.data)
        conversation, created = services.create_conversation(
            creator=request.user, kind=data["kind"], title=data.get("title", ""), member_ids=data["member_ids"]
        )
        body = conversation_body(request.user, conversation.pk)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConversationDetailView(APIView):
    @extend_schema(
        operation_id="conversations_retrieve",
        summary="Get a conversation",
        responses={200: ConversationSerializer, **error_responses(404)},
    )
    def get(self, request, conversation_id: int):
        return Response(conversation_body(request.user, conversation_id))

    @extend_schema(
        operation_id="conversations_rename",
        summary="Rename a group conversation",
        description="Owners and admins only; direct conversations have no title.",
        request=ConversationRenameSerializer,
        responses={
            200: ConversationSerializer,
            **error_responses(
                400, 403, 404, 415, notes={400: "Also when the conversation is direct (`field`: `conversation`)."}
            ),
        },
    )
    def patch(self, request, conversation_id: int):
        data = validated(ConversationRenameSerializer, request.data)
        services.rename_conversation(actor=request.user, conversation_id=conversation_id, title=data["title"])
        return Response(conversation_body(request.user, conversation_id))


class MemberListView(APIView):
    @extend_schema(
        operation_id="conversations_members_add",
        summary="Add a member to a group conversation",
        description="Owners and admins only. Adding a current member changes nothing and returns the membership.",
        request=MemberAddSerializer,
        responses={
            201: MemberSerializer,
            **error_responses(
                400,
                403,
                404,
                415,
                429,
                notes={
                    400: "Also when `user_id` is not an active user (`field`: `user_id`), or the conversation is direct "
                    "(`field`: `conversation`).",
                    429: "`rate_limited`: the user was added by others to MEMBER_ADDS_PER_HOUR conversations "
                    "in the last hour (`field`: `user_id`).",
                },
            ),
        },
    )
    def post(self, request, conversation_id: int):
        data = validated(MemberAddSerializer, request.data)
        membership = services.add_member(
            actor=request.user, conversation_id=conversation_id, user_id=data["user_id"], role=data["role"]
        )
        return Response(MemberSerializer(member_payload(membership)).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    @extend_schema(
        operation_id="conversations_members_remove",
        summary="Remove a member, or leave",
        description=(
            "Removing yourself leaves the conversation. Removing others needs owner or admin; "
            "the owner cannot be removed. When the owner leaves, an admin (or else the longest member) "
            "becomes owner."
        ),
        responses={
            204: None,
            **error_responses(
                400, 403, 404, notes={400: "Also when the conversation is direct (`field`: `conversation`)."}
            ),
        },
    )
    def delete(self, request, conversation_id: int, user_id: int):
        services.remove_member(actor=request.user, conversation_id=conversation_id, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageListView(APIView):
    @extend_schema(
        operation_id="conversations_messages_list",
        summary="Page through messages by seq",
        description=(
            "With `after`: the messages following that seq, oldest first. With `before`: the page "
            "just before that seq. With neither: the latest page. Results are always ascending by seq."
        ),
        parameters=[MessagePageQuerySerializer],
        responses={
            200: MessagePageSerializer,
            **error_responses(
                400, 404, notes={400: "Also when `after` and `before` are both given (`field`: `before`)."}
            ),
        },
    )
    def get(self, request, conversation_id: int):
        query = validated(MessagePageQuerySerializer, query_of(request))
        page = selectors.messages_page(request.user, conversation_id, **query)
        body = message_page_data(page, after=query.get("after"), before=query.get("before"))
        return Response(MessagePageSerializer(body).data)

    @extend_schema(
        operation_id="conversations_messages_send",
        summary="Send a message",
        description=(
            "Idempotent on `client_msg_id`: a retry returns the original message with 200 instead of 201. "
            "Reusing a client_msg_id in another conversation is 409 `client_msg_id_conflict`."
        ),
        request=MessageSendSerializer,
        responses={
            201: MessageSerializer,
            200: MessageSerializer,
            **error_responses(
                400,
                404,
                409,
                415,
                notes={400: "Also when `reply_to` is not a message of this conversation (`field`: `reply_to`)."},
            ),
        },
    )
    def post(self, request, conversation_id: int):
        data = validated(MessageSendSerializer, request.data)
        result = services.send_message(
            sender=request.user,
            conversation_id=conversation_id,
            client_msg_id=data["client_msg_id"],
            body=data["body"],
            reply_to_id=data.get("reply_to"),
            device=request_device(request),
        )
        return Response(
            message_body(result.message), status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


class MessageDetailView(APIView):
    @extend_schema(
        operation_id="conversations_messages_edit",
        summary="Edit a message",
        description=(
            "Sender only. `version` is the version the edit is based on; if the message changed since, "
            "the answer is 409 `version_conflict` with `details.current_version` and `details.current_body`. "
            "A deleted message answers 409 `message_deleted`. Sending the current body again succeeds unchanged."
        ),
        request=MessageEditSerializer,
        responses={200: MessageSerializer, **error_responses(400, 403, 404, 409, 415)},
    )
    def patch(self, request, conversation_id: int, message_id: int):
        data = validated(MessageEditSerializer, request.data)
        message = services.edit_message(
            actor=request.user,
            conversation_id=conversation_id,
            message_id=message_id,
            body=data["body"],
            expected_version=data["version"],
        )
        return Response(message_body(message))

    @extend_schema(
        operation_id="conversations_messages_delete",
        summary="Delete a message",
        description=(
            "The sender, or the conversation's owner and admins. Answers 200 with the tombstone: "
            "body emptied, `deleted` true, version increased. Deleting again returns the same tombstone."
        ),
        responses={200: MessageSerializer, **error_responses(403, 404)},
    )
    def delete(self, request, conversation_id: int, message_id: int):
        message = services.delete_message(actor=request.user, conversation_id=conversation_id, message_id=message_id)
        return Response(message_body(message))


class ChangeListView(APIView):
    @extend_schema(
        operation_id="conversations_changes_list",
        summary="Catch up on the change log",
        description=(
            "The conversation's changes after a seq, ascending. Seqs have no gaps, so a client that "
            "has applied up to N asks for after=N and repeats with after=last_seq while has_more."
        ),
        parameters=[ChangesQuerySerializer],
        responses={200: ChangesPageSerializer, **error_responses(400, 404)},
    )
    def get(self, request, conversation_id: int):
        query = validated(ChangesQuerySerializer, query_of(request))
        page = selectors.changes_after(request.user, conversation_id, after=query["after"], limit=query.get("limit"))
        return Response(ChangesPageSerializer(changes_page_data(page, after=query["after"])).data)
