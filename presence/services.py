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

from .models import RANK, DevicePresence, Status, UserPresence

SETTABLE = (Status.ONLINE, Status.AWAY, Status.BUSY)


def clean_status(status) -> str:
    if status not in SETTABLE:
        raise InvalidInput(f"status must be one of {[s.value for s in SETTABLE]}.", field="status")
    return status


@transaction.atomic
def device_online(*, device, connection_id: str, status: str = Status.ONLINE) -> bool:
    """The device's connection is up (or its device set a status); this connection
    now owns it, unless a newer connection of the device already does.

    Connection ids sort by the time the connection was opened (see
    `new_connection_id`): a reconnecting device's old connection may write after
    its new one (both writes wait on the database pool), and must not take the
    device back, or its close would then take the device offline under the
    connection that is still up."""
    status = clean_status(status)
    now = timezone.now()
    DevicePresence.objects.get_or_create(device_id=device.pk)
    row = DevicePresence.objects.select_for_update().get(device_id=device.pk)
    if row.connection_id > connection_id:
        return False
    row.status, row.connection_id, row.last_heartbeat_at, row.updated_at = status, connection_id, now, now
    row.save(update_fields=["status", "connection_id", "last_heartbeat_at", "updated_at"])
    return _recompute(device.user_id, now)


def new_connection_id() -> str:
    """A connection's id in presence: the time it opened (16 hex digits of
    nanoseconds, so ids sort by time) and 16 random hex digits."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


@transaction.atomic
def device_offline(*, device, connection_id: str) -> bool:
    """The connection closed; a newer connection of the same device keeps it online."""
    now = timezone.now()
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
    UserPresence.objects.get_or_create(user_id=user_id)
    presence = UserPresence.objects.select_for_update().get(user_id=user_id)
    devices = DevicePresence.objects.filter(device__user_id=user_id, device__revoked_at__isnull=True)
    aggregate = max(devices.values_list("status", flat=True), key=RANK.__getitem__, default=Status.OFFLINE)
    if aggregate == presence.status:
        return False
    if aggregate == Status.OFFLINE:
        presence.last_seen_at = devices.aggregate(last=Max("last_heartbeat_at"))["last"] or now
    presence.status = aggregate
    presence.updated_at = now
    presence.save(update_fields=["status", "last_seen_at", "updated_at"])
    return True
