"""Reads on devices."""

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
