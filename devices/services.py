"""Writes on devices: log in (create a device and its token) and revoke."""

from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone

from core.errors import AuthenticationFailed

from .live import publish_device_revoked
from .models import Device, hash_token, new_token


@dataclass(frozen=True)
class IssuedDevice:
    device: Device
    token: str  # shown once; only its digest is stored


def issue_device(*, user, name: str) -> IssuedDevice:
    token = new_token()
    device = Device.objects.create(user=user, name=name, token_hash=hash_token(token))
    return IssuedDevice(device=device, token=token)


# Where a browser session keeps the id of the device its WebSocket connections use.
SESSION_DEVICE_KEY = "realtime_device_id"


def device_for_session(user, session) -> Device | None:
    """The device of a logged-in browser session, created on first use; None once revoked."""
    device_id = session.get(SESSION_DEVICE_KEY)
    if device_id is not None:
        return Device.objects.active().select_related("user").filter(pk=device_id, user=user).first()
    device = issue_device(user=user, name="browser session").device
    session[SESSION_DEVICE_KEY] = device.pk
    session.save()
    return device


def end_session_device(user, session) -> None:
    """On logging a session out: revoke its device, which closes its sockets."""
    device = Device.objects.filter(pk=session.get(SESSION_DEVICE_KEY), user=user).first()
    if device is not None:
        revoke_device(device=device)


def log_in(*, username: str, password: str, device_name: str, request=None) -> IssuedDevice:
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise AuthenticationFailed("Unable to log in with the given username and password.")
    return issue_device(user=user, name=device_name)


@transaction.atomic
def revoke_device(*, device: Device) -> Device:
    """Revoke a device; its connections are told to close once this commits."""
    locked = Device.objects.select_for_update().get(pk=device.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        publish_device_revoked(locked)
    return locked
