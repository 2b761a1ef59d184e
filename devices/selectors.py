"""Reads on devices."""

from core.errors import NotFound

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


def revoked_among(device_ids) -> set[int]:
    """Which of these devices were revoked (or whose user was deactivated)."""
    active = set(
        Device.objects.active().filter(pk__in=list(device_ids), user__is_active=True).values_list("pk", flat=True)
    )
    return set(device_ids) - active


def devices_of(user):
    return Device.objects.filter(user=user).order_by("-created_at", "-id")


def device_of(user, device_id) -> Device:
    """One of the user's devices; another user's device is NotFound, like a missing one."""
    device = devices_of(user).filter(pk=device_id).first()
    if device is None:
        raise NotFound("Device not found.")
    return device
