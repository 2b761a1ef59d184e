"""REST authentication by device token: `Authorization: Bearer <token>`
(`Token <token>` is accepted too, as DRF clients commonly send it)."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import Device
from .selectors import device_for_token

SCHEMES = (b"bearer", b"token")


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in SCHEMES:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        device = device_for_token(token)
        if device is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        touch(device)
        request.device = device
        return device.user, device

    def authenticate_header(self, request):
        return self.keyword


def touch(device) -> None:
    """Record that the device was used (at most once a minute, to spare writes)."""
    now = timezone.now()
    if device.last_used_at is None or (now - device.last_used_at).total_seconds() > 60:
        type(device).objects.filter(pk=device.pk).update(last_used_at=now)
        device.last_used_at = now


def request_device(request):
    """The device a REST request was authenticated with, or None for session auth.

    Services take it to record which device acted (a sent message's device, a
    receipt's device), so the user's other devices can tell who did it.
    """
    device = getattr(request, "auth", None)
    return device if isinstance(device, Device) else None
