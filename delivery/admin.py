"""Admin for receipt cursors, view-only.

A cursor only moves forward, through `delivery.services`, which also tells the
other members; an edit here could move it back or skip the event.
"""

from django.contrib import admin

from core.admin_mixins import ReadOnlyAdminMixin

from .models import ReceiptCursor


@admin.register(ReceiptCursor)
class ReceiptCursorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "user", "conversation", "delivered_seq", "read_seq", "delivered_at", "read_at", "updated_at")
    list_filter = ("conversation__kind", "updated_at")
    list_select_related = ("user", "conversation")
    search_fields = ("user__username", "conversation__title", "=conversation__id")
    date_hierarchy = "updated_at"
    ordering = ("-updated_at", "-id")
