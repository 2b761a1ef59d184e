"""Pieces the apps' admins share."""


class ReadOnlyAdminMixin:
    """View-only admin for rows that only services write (logs and derived state).

    Viewing keeps Django's own rule (the "view" or "change" permission), so staff
    can be given read access to these pages without being able to alter them.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
