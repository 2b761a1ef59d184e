"""Admin for presence, view-only.

Presence is state driven by the devices' connections and heartbeats; a value
typed in here would be overwritten by the next heartbeat and never announced.
"""

from django.contrib import admin

from core.admin_mixins import ReadOnlyAdminMixin

from .models import DevicePresence, UserPresence


@admin.register(DevicePresence)
class DevicePresenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "device", "user", "status", "last_heartbeat_at", "updated_at")
    list_filter = ("status", "updated_at")
    list_select_related = ("device__user",)
    search_fields = ("device__name", "device__user__username")
    date_hierarchy = "updated_at"
    ordering = ("-updated_at", "-id")

    @admin.display(description="user", ordering="device__user__username")
    def user(self, presence):
        return presence.device.user


@admin.register(UserPresence)
class UserPresenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "user", "status", "last_seen_at", "updated_at")
    list_filter = ("status", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    date_hierarchy = "updated_at"
    ordering = ("-updated_at", "-id")
