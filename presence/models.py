"""Presence: per device, and aggregated per user (online > busy > away > offline)."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    """A device's or user's availability. A user's is the highest of their devices'."""

    ONLINE = "online", "Online"
    BUSY = "busy", "Busy"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


# The order of precedence when aggregating a user's devices.
RANK = {Status.ONLINE: 3, Status.BUSY: 2, Status.AWAY: 1, Status.OFFLINE: 0}


class DevicePresence(models.Model):
    """The presence of one device, refreshed by its connection's heartbeats."""

    device = models.OneToOneField("devices.Device", on_delete=models.CASCADE, related_name="presence")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    # The connection that owns this presence: a device's newest connection wins,
    # and an older one closing does not take the device offline.
    connection_id = models.CharField(max_length=64, blank=True, default="")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["status", "last_heartbeat_at"], name="devpresence_expiry_idx"),
            models.Index(fields=["connection_id"], name="devpresence_connection_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.device}: {self.status}"


class UserPresence(models.Model):
    """A user's presence over all their devices, with when they were last seen."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presence")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user}: {self.status}"
