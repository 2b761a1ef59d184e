"""Reads on devices."""

from realtime_sync.errors import NotFound

from .models import Device, hash_token


def device_for_token(token: str) -> Device | None:
    """The active device a token belongs to, with its user, or None."""
    if not token:
        return None
    return (
        Device.objects.active()
        .select_related("user")
        .filter(token_hash=hash_token(token), user__is_active=True)
        .first()
    )


def devices_of(user):
    return Device.objects.filter(user=user).order_by("-created_at", "-id")


def device_of(user, device_id) -> Device:
    """One of the user's devices; another user's device is NotFound, like a missing one."""
    device = devices_of(user).filter(pk=device_id).first()
    if device is None:
        raise NotFound("Device not found.")
    return device
