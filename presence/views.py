"""REST views of presence: the users who share a conversation with me."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_responses

from .selectors import presence_of, presences_for
from .serializers import PresenceSerializer


class PresenceListView(APIView):
    @extend_schema(
        operation_id="presence_list",
        summary="Presence of everyone I share a conversation with",
        description="Aggregated over each user's devices: online > busy > away > offline.",
        responses={200: PresenceSerializer(many=True), **error_responses()},
    )
    def get(self, request):
        return Response(PresenceSerializer(presences_for(request.user), many=True).data)


class PresenceDetailView(APIView):
    @extend_schema(
        operation_id="presence_retrieve",
        summary="One user's presence",
        description="404 unless the user shares a conversation with me, exactly as for an unknown user.",
        responses={200: PresenceSerializer, **error_responses(404)},
    )
    def get(self, request, user_id: int):
        return Response(PresenceSerializer(presence_of(request.user, user_id)).data)
