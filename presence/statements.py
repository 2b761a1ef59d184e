"""Presence writes on PostgreSQL: one statement each (migration 0003's
functions), where the ORM path (`presence.services`) is a transaction of five
or six round trips. Every handshake and every close makes one, so a reconnect
storm makes thousands at once."""

from django.db import connection

_ONLINE_SQL = "SELECT active, changed FROM realtime_device_online(%s, %s, %s, %s, %s, %s)"
_OFFLINE_SQL = "SELECT realtime_device_offline(%s, %s, %s, %s)"


def available() -> bool:
    return connection.vendor == "postgresql"


def device_online(device, connection_id: str, status: str, now, *, check_active: bool) -> tuple[bool, bool]:
    """(active, changed): see `services.device_online` and `services.online_if_active`."""
    with connection.cursor() as cursor:
        cursor.execute(_ONLINE_SQL, [device.pk, device.user_id, connection_id, status, now, check_active])
        active, changed = cursor.fetchone()
    return active, changed


def device_offline(device, connection_id: str, now) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_OFFLINE_SQL, [device.pk, device.user_id, connection_id, now])
        return cursor.fetchone()[0]
