"""Reads on devices.

The two that every WebSocket handshake makes (`device_for_token`,
`is_active_device`) are written as plain SQL: built with the ORM, the building
cost more than the query itself, and a connect storm makes thousands of them.
On PostgreSQL the device and its user come in one query.
"""

import functools

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F

from core.errors import NotFound
from core.lookups import AnyOf

from .models import Device, hash_token


def device_for_token(token: str) -> Device | None:
    """The active device a token belongs to, with its user, or None."""
    if not token:
        return None
    if connection.vendor == "postgresql":
        return _device_and_owner(hash_token(token))
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


def _device_and_owner(token_hash: str) -> Device | None:
    """The device and its user in one query. Built straight from the row: on
    PostgreSQL no field of either model converts what psycopg returns (the
    ORM's converters are for other databases' dates and booleans), so the
    instances are what the ORM would have made (a test compares them)."""
    sql, device_fields, user_fields = _device_and_owner_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, token_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    device = Device.from_db(connection.alias, device_fields, row[: len(device_fields)])
    device.user = get_user_model().from_db(connection.alias, user_fields, row[len(device_fields) :])
    return device


@functools.cache
def _device_and_owner_query() -> tuple[str, list[str], list[str]]:
    """The query of `_device_and_owner` (one parameter: the token's hash) and its fields, device's then user's."""
    device_fields = Device._meta.concrete_fields
    user_fields = get_user_model()._meta.concrete_fields
    columns = [f"device.{field.column}" for field in device_fields] + [f"owner.{field.column}" for field in user_fields]
    sql = f"SELECT {', '.join(columns)} {_active_devices()} AND device.token_hash = %s"
    return sql, [field.attname for field in device_fields], [field.attname for field in user_fields]


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
        Device.objects.active()
        .filter(AnyOf(F("pk"), list(device_ids)), user__is_active=True)
        .values_list("pk", flat=True)
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
