"""REST views of read and delivery receipts.

Cursors only move forward (the services see to it), so these endpoints are safe
to call from every device in any order.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_responses

from . import selectors, services
from .serializers import (
    ConversationReceiptsSerializer,
    MessageReceiptsSerializer,
    ReceiptCursorSerializer,
    SeqSerializer,
    message_receipts_data,
)


class CursorView(APIView):
    """Moves one of the caller's receipt cursors in a conversation to `seq`."""

    advance = None  # the service that moves the cursor, as a staticmethod

    def post(self, request, conversation_id: int):
        serializer = SeqSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cursor = self.advance(
            user=request.user,
            conversation_id=conversation_id,
            seq=serializer.validated_data["seq"],
        )
        return Response(ReceiptCursorSerializer(cursor).data)


@extend_schema_view(
    post=extend_schema(
        operation_id="conversations_read",
        summary="Mark read up to a seq",
        description="Reading implies delivery. The cursor never moves back: an older seq leaves it where it is.",
        request=SeqSerializer,
        responses={200: ReceiptCursorSerializer, **error_responses(400, 404, 415)},
    )
)
class ReadView(CursorView):
    advance = staticmethod(services.mark_read)


@extend_schema_view(
    post=extend_schema(
        operation_id="conversations_delivered",
        summary="Acknowledge delivery up to a seq",
        description="The cursor never moves back: an older seq leaves it where it is.",
        request=SeqSerializer,
        responses={200: ReceiptCursorSerializer, **error_responses(400, 404, 415)},
    )
)
class DeliveredView(CursorView):
    advance = staticmethod(services.mark_delivered)


class MessageReceiptsView(APIView):
    @extend_schema(
        operation_id="conversations_messages_receipts",
        summary="Who has a message delivered and read",
        description="Only the message's sender may ask (others get 403). Counts cover the other current members.",
        responses={200: MessageReceiptsSerializer, **error_responses(403, 404)},
    )
    def get(self, request, conversation_id: int, message_id: int):
        receipts = selectors.message_receipts(request.user, conversation_id, message_id)
        users = selectors.users_by_id(receipts.delivered_to)
        return Response(MessageReceiptsSerializer(message_receipts_data(receipts, users)).data)


class ConversationReceiptsView(APIView):
    @extend_schema(
        operation_id="conversations_receipts",
        summary="Every member's delivered and read cursors",
        description=(
            "The current members' receipt cursors, the state `receipts.updated` events move (they are not "
            "replayed on sync). A member's message with seq s is delivered to, and read by, the other members "
            "whose `delivered_seq`, and `read_seq`, are at least s."
        ),
        responses={200: ConversationReceiptsSerializer, **error_responses(404)},
    )
    def get(self, request, conversation_id: int):
        receipts = selectors.conversation_receipts(request.user, conversation_id)
        return Response(ConversationReceiptsSerializer({"conversation_id": conversation_id, "receipts": receipts}).data)
