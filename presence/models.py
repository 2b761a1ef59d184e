"""Presence: per device, and aggregated per user (online > busy > away > offline)."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    ONLINE = "online", "Online"
    BUSY = "busy", "Busy"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class DevicePresence(models.Model):
    """The presence of one device, refreshed by its connection's heartbeats."""

    device = models.OneToOneField("devices.Device", on_delete=models.CASCADE, related_name="presence")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status", "last_heartbeat_at"], name="devpresence_expiry_idx")]

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
