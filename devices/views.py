"""REST views of log-in, log-out and the user's devices.

Each view parses its input, calls a service or selector and serializes the
result; the rules live in devices.services and devices.selectors.
"""

from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_responses

from . import selectors, services
from .authentication import request_device
from .serializers import DeviceSerializer, LoginResultSerializer, LoginSerializer, MeSerializer
from .throttles import LoginRateThrottle


class LoginView(APIView):
    # No authentication: a stale token or session must not stop anyone logging in.
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        operation_id="auth_login",
        summary="Log in a new device",
        description=(
            "Checks the username and password and creates a device with its own token. "
            "The token is returned only here; each device logs in once and can be revoked alone. "
            "Wrong credentials answer 400 with code `invalid_credentials`. Rate limited per client address "
            "and per username (docs/protocol.md §16)."
        ),
        request=LoginSerializer,
        responses={
            201: LoginResultSerializer,
            **error_responses(
                400,
                415,
                429,
                authenticated=False,
                notes={
                    400: "Also when the username and password match no active user: code `invalid_credentials`.",
                    429: "`throttled`, with Retry-After in seconds: too many attempts from this client address "
                    "(LOGIN_RATE_PER_ADDRESS), or for this username from all addresses (LOGIN_RATE_PER_USERNAME).",
                },
            ),
        },
        auth=[],
    )
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = services.log_in(
            username=data["username"],
            password=data["password"],
            device_name=data["device_name"],
            request=request._request,
        )
        result = {"token": issued.token, "device": issued.device, "user": issued.device.user}
        body = LoginResultSerializer(result, context={"device": issued.device}).data
        return Response(body, status=status.HTTP_201_CREATED)


class LogoutView(APIView):
    @extend_schema(
        operation_id="auth_logout",
        summary="Log out",
        description=(
            "With a token: revokes the device that made the request, so its token stops working "
            "and its live connections are closed. With a session: ends the session and revokes "
            "the device its WebSocket connections used."
        ),
        request=None,
        responses={204: None, **error_responses()},
    )
    def post(self, request):
        device = request_device(request)
        if device is not None:
            services.revoke_device(device=device)
        else:
            services.end_session_device(request.user, request.session)
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(
        operation_id="me_retrieve",
        summary="Who am I",
        description="The user the request is authenticated as, with the device of its token (null for a session).",
        responses={200: MeSerializer, **error_responses()},
    )
    def get(self, request):
        device = request_device(request)
        user = request.user
        body = {"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff, "device": device}
        return Response(MeSerializer(body, context={"device": device}).data)


class DeviceListView(APIView):
    @extend_schema(
        operation_id="devices_list",
        summary="List my devices",
        description="All devices of the user, newest first, revoked ones included; `current` marks this one.",
        responses={200: DeviceSerializer(many=True), **error_responses()},
    )
    def get(self, request):
        devices = selectors.devices_of(request.user)
        return Response(DeviceSerializer(devices, many=True, context={"device": request_device(request)}).data)


class DeviceDetailView(APIView):
    @extend_schema(
        operation_id="devices_revoke",
        summary="Revoke one of my devices",
        description=(
            "Its token stops working at once and its live connections are closed. "
            "Revoking an already revoked device succeeds. Another user's device is 404."
        ),
        responses={204: None, **error_responses(404)},
    )
    def delete(self, request, device_id: int):
        device = selectors.device_of(request.user, device_id)
        services.revoke_device(device=device)
        return Response(status=status.HTTP_204_NO_CONTENT)
