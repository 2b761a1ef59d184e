"""Admin for devices: look them up and revoke them.

Devices are created only by logging in, because the token is shown once to the
client that asked for it; the admin cannot add one. A device is never edited or
deleted here either: revoking (through `revoke_device`) is what ends a device,
and unlike a deleted row it also tells the device's open connections to close.
The token digest is never displayed.
"""

from django.contrib import admin, messages

from .models import Device
from .services import revoke_device


class DeviceStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "user", "is_active", "created_at", "last_used_at", "revoked_at")
    list_display_links = ("id", "name")
    list_filter = (DeviceStatusFilter, "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "user__email")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    # Every field but token_hash, which must not leak into a page or a screenshot.
    fields = ("user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke_devices",)

    @admin.display(boolean=True, description="active", ordering="revoked_at")
    def is_active(self, device):
        return device.is_active

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        """Revoking is a change to the device, so it needs the change permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Revoke selected devices", permissions=["revoke"])
    def revoke_devices(self, request, queryset):
        revoked = 0
        for device in queryset.filter(revoked_at__isnull=True):
            revoke_device(device=device)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} device(s).", messages.SUCCESS)
