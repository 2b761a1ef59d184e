"""Per-(user, conversation) receipt cursors.

Receipts are state, not log: `read_seq` and `delivered_seq` only move forward,
so reading on a phone never un-reads the laptop. A sender's "delivered to 37,
read by 12" is counted from these cursors, not stored per message.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class ReceiptCursor(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="receipt_cursors")
    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="receipt_cursors"
    )
    delivered_seq = models.BigIntegerField(default=0)
    read_seq = models.BigIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "conversation"], name="one_receipt_cursor_per_member"),
            # Whatever was read was delivered.
            models.CheckConstraint(condition=Q(delivered_seq__gte=F("read_seq")), name="delivered_at_least_read"),
        ]
        indexes = [
            models.Index(fields=["conversation", "delivered_seq"], name="cursor_conv_delivered_idx"),
            models.Index(fields=["conversation", "read_seq"], name="cursor_conv_read_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.conversation_id}: delivered {self.delivered_seq}, read {self.read_seq}"
