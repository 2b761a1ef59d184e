"""Devices: one per login, each with its own secret token and its own connection.

A user has several devices (phone, laptop, a script). Each device authenticates
with its own token, keeps its own catch-up position, and can be revoked alone.
Only a SHA-256 digest of the token is stored, so a database dump reveals no
usable credential.
"""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class DeviceQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class Device(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="device_user_revoked_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
