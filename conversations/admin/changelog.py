"""The change log in the admin: read-only, it is the truth devices sync from."""

import json

from django.contrib import admin
from django.utils.html import format_html

from core.admin_mixins import ReadOnlyAdminMixin

from ..models import Change


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The change log, view-only: it is the history devices sync from, so an
    entry is never added, altered or removed by hand."""

    list_display = ("id", "conversation", "seq", "kind", "actor", "message", "created_at")
    list_filter = ("kind", "created_at")
    list_select_related = ("conversation", "actor", "message")
    search_fields = ("=conversation__id", "conversation__title", "actor__username", "kind")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    fields = ("conversation", "seq", "kind", "actor", "message", "created_at", "pretty_payload")
    readonly_fields = fields

    @admin.display(description="payload")
    def pretty_payload(self, change):
        return format_html("<pre>{}</pre>", json.dumps(change.payload, indent=2, ensure_ascii=False, sort_keys=True))
