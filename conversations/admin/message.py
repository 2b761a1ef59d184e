"""Messages in the admin: edits and deletes go through the services, as a moderator."""

from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils.text import Truncator

from core.admin_mixins import ReadOnlyAdminMixin

from ..models import Message, MessageEdit
from ..services import delete_message, edit_message
from ..validation import clean_body
from .base import ServiceErrorsAsMessagesMixin, as_validation_error


class MessageStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "Not edited"), ("edited", "Edited"), ("deleted", "Deleted")]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.filter(deleted_at__isnull=True, edited_at__isnull=True)
        if self.value() == "edited":
            return queryset.filter(deleted_at__isnull=True, edited_at__isnull=False)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class MessageEditInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Earlier bodies of the message, oldest first (erased when it is deleted)."""

    model = MessageEdit
    fields = ("version", "body", "edited_by", "edited_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


class MessageAdminForm(forms.ModelForm):
    """The body, and the version it was shown at, so an edit made meanwhile by
    someone else is refused as a conflict rather than silently overwritten."""

    expected_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    class Meta:
        model = Message
        fields = ("body",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "body" in self.fields:
            self.fields["body"].required = True
        self.fields["expected_version"].initial = self.instance.version

    def clean_body(self):
        # Browsers send a textarea's line breaks as CRLF; keep the "\n" the API stores,
        # so saving an unchanged multi-line body is not mistaken for an edit.
        body = self.cleaned_data["body"].replace("\r\n", "\n")
        return as_validation_error(clean_body, body)


@admin.register(Message)
class MessageAdmin(ServiceErrorsAsMessagesMixin, admin.ModelAdmin):
    """Moderation of messages: edit a body or delete a message, as a moderator.

    No add page: sending belongs to members. Only the body is editable, through
    `edit_message` with the version the form showed; deleting (one message or
    the bulk action) goes through `delete_message` and leaves a tombstone, as a
    member's delete does. A tombstone is view-only.
    """

    form = MessageAdminForm
    inlines = (MessageEditInline,)
    list_display = (
        "id",
        "conversation",
        "seq",
        "sender",
        "short_body",
        "version",
        "created_at",
        "edited_at",
        "is_deleted",
    )
    list_display_links = ("id", "short_body")
    list_filter = (MessageStateFilter, "conversation__kind", "created_at")
    list_select_related = ("conversation", "sender")
    search_fields = ("=id", "body", "client_msg_id", "sender__username", "conversation__title")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    fields = (
        "conversation",
        "seq",
        "sender",
        "sender_device",
        "client_msg_id",
        "reply_to",
        "version",
        "created_at",
        "edited_at",
        "deleted_at",
        "body",
        "expected_version",
    )
    readonly_fields = (
        "conversation",
        "seq",
        "sender",
        "sender_device",
        "client_msg_id",
        "reply_to",
        "version",
        "created_at",
        "edited_at",
        "deleted_at",
    )

    @admin.display(description="body")
    def short_body(self, message):
        if message.is_deleted:
            return "(deleted)"
        return Truncator(message.body).chars(60)

    @admin.display(boolean=True, description="deleted", ordering="deleted_at")
    def is_deleted(self, message):
        return message.is_deleted

    def get_fields(self, request, obj=None):
        """The hidden version travels only with an editable form."""
        if obj is not None and not self.has_change_permission(request, obj):
            return [name for name in self.fields if name != "expected_version"]
        return self.fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_deleted:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_deleted:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        """Edit through the service; a stale `expected_version` raises VersionConflict."""
        if "body" not in form.changed_data:
            return
        edited = edit_message(
            actor=request.user,
            conversation_id=obj.conversation_id,
            message_id=obj.pk,
            body=form.cleaned_data["body"],
            expected_version=form.cleaned_data["expected_version"],
            as_moderator=True,
        )
        obj.version, obj.edited_at = edited.version, edited.edited_at

    def delete_model(self, request, obj):
        delete_message(actor=request.user, conversation_id=obj.conversation_id, message_id=obj.pk, as_moderator=True)

    def delete_queryset(self, request, queryset):
        """Tombstone each selected message, all or none; conversations are locked
        in id order so two bulk deletes cannot deadlock."""
        with transaction.atomic():
            for message in queryset.order_by("conversation_id", "seq"):
                self.delete_model(request, message)

    def get_deleted_objects(self, objs, request):
        """Only the messages themselves: they stay as tombstones, and their edit
        history, erased with them, needs no permission of its own."""
        objs = list(objs)
        listed = [f"{message}: {self.short_body(message)}" for message in objs]
        return listed, {self.opts.verbose_name_plural: len(objs)}, set(), []


@admin.register(MessageEdit)
class MessageEditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "message", "version", "short_body", "edited_by", "edited_at")
    list_filter = ("edited_at",)
    list_select_related = ("message", "edited_by")
    search_fields = ("body", "=message__id", "edited_by__username")
    date_hierarchy = "edited_at"
    ordering = ("-edited_at", "-id")

    @admin.display(description="body")
    def short_body(self, edit):
        return Truncator(edit.body).chars(60)


# The change log
