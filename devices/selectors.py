"""Reads on devices.

The two that every WebSocket handshake makes (`device_for_token`,
`is_active_device`) are written as plain SQL: built with the ORM, the building
cost more than the query itself, and a connect storm makes thousands of them.
"""

from django.contrib.auth import get_user_model
from django.db import connection

from core.errors import NotFound

from .models import Device, hash_token


def device_for_token(token: str) -> Device | None:
    """The active device a token belongs to, with its user, or None."""
    if not token:
        return None
    found = list(
        Device.objects.raw(f"SELECT device.* {_active_devices()} AND device.token_hash = %s", [True, hash_token(token)])
    )
    if not found:
        return None
    device = found[0]
    users = get_user_model()
    owner = list(users.objects.raw(f"SELECT * FROM {users._meta.db_table} WHERE id = %s", [device.user_id]))
    if not owner:  # deleted in between
        return None
    device.user = owner[0]
    return device


def is_active_device(device_id: int) -> bool:
    """Whether the device is not revoked and its user not deactivated."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 {_active_devices()} AND device.id = %s", [True, device_id])
        return cursor.fetchone() is not None


def _active_devices() -> str:
    """FROM and WHERE of the devices not revoked whose user is active (one
    parameter: True), as `Device.objects.active()` with `user__is_active`."""
    return (
        f"FROM {Device._meta.db_table} device JOIN {get_user_model()._meta.db_table} owner"
        " ON owner.id = device.user_id WHERE device.revoked_at IS NULL AND owner.is_active = %s"
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
