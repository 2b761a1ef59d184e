"""Writes on presence: a device comes online, sets a status, goes offline, is
refreshed by its server, or expires because its server stopped refreshing it.

Each write recomputes the user's aggregate (online > busy > away > offline)
under a row lock on the user's presence and says whether it changed, so the
caller broadcasts real changes only.
"""

import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.errors import InvalidInput
from devices.models import Device
from devices.selectors import is_active_device

from . import statements
from .models import RANK, DevicePresence, Status, UserPresence

SETTABLE = (Status.ONLINE, Status.AWAY, Status.BUSY)


def clean_status(status) -> str:
    if status not in SETTABLE:
        raise InvalidInput(f"status must be one of {[s.value for s in SETTABLE]}.", field="status")
    return status


def device_online(*, device, connection_id: str, status: str = Status.ONLINE) -> bool:
    """The device's connection is up (or its device set a status); this connection
    now owns it, unless a newer connection of the device already does.

    Connection ids sort by the time the connection was opened (see
    `new_connection_id`): a reconnecting device's old connection may write after
    its new one (both writes wait on the database pool), and must not take the
    device back, or its close would then take the device offline under the
    connection that is still up.

    Every connection runs this in its handshake, so it is a few plain
    statements (in a reconnect storm the ORM's get_or_create, locks and saves
    were a fifth of a server's time): one upsert that only a newer or the same
    connection wins, then the user's aggregate (`_recompute`); on PostgreSQL
    one statement (`presence.statements`)."""
    status = clean_status(status)
    now = timezone.now()
    if statements.available():
        return statements.device_online(device, connection_id, status, now, check_active=False)[1]
    return _device_online(device, connection_id, status, now)


def online_if_active(*, device, connection_id: str) -> tuple[bool, bool]:
    """A handshake's presence, once the device's groups are joined: whether the
    device is still active (a revoke that committed before the join has no
    event to deliver), and if it is, mark it online. (active, whether the
    user's presence changed); one statement on PostgreSQL."""
    now = timezone.now()
    if statements.available():
        return statements.device_online(device, connection_id, Status.ONLINE, now, check_active=True)
    if not is_active_device(device.pk):
        return False, False
    return True, _device_online(device, connection_id, Status.ONLINE, now)


@transaction.atomic
def _device_online(device, connection_id: str, status: str, now) -> bool:
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_CLAIM_DEVICE_SQL, [device.pk, status, connection_id, now, now])
        if cursor.fetchone() is None:
            return False
    return _recompute(device.user_id, now)


_CLAIM_DEVICE_SQL = f"""
INSERT INTO {DevicePresence._meta.db_table} (device_id, status, connection_id, last_heartbeat_at, updated_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET
    status = excluded.status,
    connection_id = excluded.connection_id,
    last_heartbeat_at = excluded.last_heartbeat_at,
    updated_at = excluded.updated_at
WHERE {DevicePresence._meta.db_table}.connection_id <= excluded.connection_id
RETURNING id
"""


def new_connection_id() -> str:
    """A connection's id in presence: the time it opened (16 hex digits of
    nanoseconds, so ids sort by time) and 16 random hex digits."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


def device_offline(*, device, connection_id: str) -> bool:
    """The connection closed; a newer connection of the same device keeps it
    online. One statement on PostgreSQL."""
    now = timezone.now()
    if statements.available():
        return statements.device_offline(device, connection_id, now)
    return _device_offline(device, connection_id, now)


@transaction.atomic
def _device_offline(device, connection_id: str, now) -> bool:
    closed = DevicePresence.objects.filter(device_id=device.pk, connection_id=connection_id).update(
        status=Status.OFFLINE, updated_at=now, last_heartbeat_at=now
    )
    return bool(closed) and _recompute(device.user_id, now)


def refresh(connection_ids) -> int:
    """A live server vouches for its connections (the heartbeat presence expires by)."""
    return (
        DevicePresence.objects.filter(connection_id__in=list(connection_ids))
        .exclude(status=Status.OFFLINE)
        .update(last_heartbeat_at=timezone.now())
    )


@transaction.atomic
def expire_stale(*, timeout: float) -> list[int]:
    """Take offline the devices nobody refreshed for `timeout` seconds (their
    server died); returns the users whose presence changed. Safe to run in every
    server at once: each stale row is taken by one of them."""
    now = timezone.now()
    stale = list(
        DevicePresence.objects.select_for_update(skip_locked=True)
        .filter(last_heartbeat_at__lt=now - timedelta(seconds=timeout))
        .exclude(status=Status.OFFLINE)
        .values_list("pk", "device__user_id")
    )
    if not stale:
        return []
    DevicePresence.objects.filter(pk__in=[pk for pk, _ in stale]).update(status=Status.OFFLINE, updated_at=now)
    return [user_id for user_id in sorted({user_id for _, user_id in stale}) if _recompute(user_id, now)]


def _recompute(user_id: int, now) -> bool:
    """Set the user's aggregate from their devices; True if it changed.

    The user's row is locked first (the upsert's DO UPDATE takes the lock and
    reads the status), then the devices are read in a statement of their own,
    so it sees every device write committed while this one waited: two devices
    of one user changing at once cannot both compute from a stale view."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_LOCK_USER_SQL, [user_id, Status.OFFLINE, now])
        stored = cursor.fetchone()[0]
        cursor.execute(_DEVICE_STATUSES_SQL, [user_id])
        statuses = [row[0] for row in cursor.fetchall()]
    aggregate = max(statuses, key=RANK.__getitem__, default=Status.OFFLINE)
    if aggregate == stored:
        return False
    changes = {"status": aggregate, "updated_at": now}
    if aggregate == Status.OFFLINE:
        devices = DevicePresence.objects.filter(device__user_id=user_id, device__revoked_at__isnull=True)
        changes["last_seen_at"] = devices.aggregate(last=Max("last_heartbeat_at"))["last"] or now
    UserPresence.objects.filter(user_id=user_id).update(**changes)
    return True


_LOCK_USER_SQL = f"""
INSERT INTO {UserPresence._meta.db_table} (user_id, status, updated_at) VALUES (%s, %s, %s)
ON CONFLICT (user_id) DO UPDATE SET status = {UserPresence._meta.db_table}.status
RETURNING status
"""

_DEVICE_STATUSES_SQL = f"""
SELECT presence.status FROM {DevicePresence._meta.db_table} presence
JOIN {Device._meta.db_table} device ON device.id = presence.device_id
WHERE device.user_id = %s AND device.revoked_at IS NULL
"""
