"""Admin for conversations, members, messages and the change log.

Every write made here goes through `conversations.services`, with the admin
user as the actor and `as_moderator=True`: a rename, a new or removed member,
an edited or deleted message gets the same change-log entry and the same live
event as when a member does it over the API, so devices stay in sync. Nothing
here saves those models directly; what has no service (creating a
conversation on someone's behalf, deleting one) is not offered.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.utils.html import format_html
from django.utils.text import Truncator

from realtime_sync.errors import InvalidInput, ServiceError

from .models import Change, Conversation, Membership, Message, MessageEdit
from .services import add_member, delete_message, edit_message, remove_member, rename_conversation
from .services.members import ADDABLE_ROLES
from .validation import clean_body, clean_title


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


class ServiceErrorsAsMessagesMixin:
    """Show a service's refusal (a version conflict, a vanished member) as an
    admin error message instead of a server error.

    The admin's change and delete views write in one transaction; the error is
    caught outside it, so everything the request did is rolled back, and the
    page is loaded again showing the current state, e.g. a message's newer
    version after a conflicting edit.
    """

    def changeform_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().changeform_view, request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().delete_view, request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().changelist_view, request, *args, **kwargs)

    def _reporting_service_errors(self, view, request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ServiceError as error:
            self.message_user(request, describe_service_error(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def describe_service_error(error: ServiceError) -> str:
    text = f"{error.message} Nothing was saved."
    if "current_version" in error.details:
        text += f" The message is now at version {error.details['current_version']}; this page shows it."
    return text


def as_validation_error(clean, value):
    """Run one of the services' input rules as a form field's validation."""
    try:
        return clean(value)
    except InvalidInput as error:
        raise ValidationError(error.message) from error


# Conversations and members


class MembershipInline(admin.TabularInline):
    """The conversation's members, read-only: membership changes go through the
    conversation form's "Members" fields, which call the services."""

    model = Membership
    fields = ("user", "role", "is_active", "joined_at", "joined_seq", "left_at", "left_seq")
    readonly_fields = fields
    ordering = ("-is_active", "joined_at", "id")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


MEMBER_FIELDS = ("add_members", "add_role", "remove_members")


class ConversationAdminForm(forms.ModelForm):
    """The title plus three non-model fields that say which members to add or remove.

    The choices only offer what the services accept (active users who are not
    members yet; current members), so a refusal can only come from a race.
    """

    add_members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=AutocompleteSelectMultiple(Membership._meta.get_field("user"), admin.site),
        help_text="Active users who are not members yet.",
    )
    add_role = forms.ChoiceField(
        choices=[(role.value, role.label) for role in ADDABLE_ROLES],
        initial=Membership.Role.MEMBER,
        label="Role of added members",
    )
    remove_members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Removing the owner passes ownership to the longest-standing admin, or else member.",
    )

    class Meta:
        model = Conversation
        fields = ("title",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.order_by("username")
        members = Membership.objects.active().filter(conversation_id=self.instance.pk).values("user_id")
        if "add_members" in self.fields:
            self.fields["add_members"].queryset = users.filter(is_active=True).exclude(pk__in=members)
        if "remove_members" in self.fields:
            self.fields["remove_members"].queryset = users.filter(pk__in=members)

    def clean_title(self):
        return as_validation_error(clean_title, self.cleaned_data["title"])


@admin.register(Conversation)
class ConversationAdmin(ServiceErrorsAsMessagesMixin, admin.ModelAdmin):
    """Group conversations can be renamed and their members added or removed;
    a direct conversation has no title and a fixed pair, so it is view-only.

    There is no add page: a conversation is created by a user through the API
    (`create_conversation` makes the creator its owner and first member, which a
    moderator acting for someone else would misrecord). There is no delete
    either: no service deletes a conversation, and deleting the rows would
    leave members' devices holding a conversation that never announced its end.
    """

    form = ConversationAdminForm
    inlines = (MembershipInline,)
    list_display = ("id", "display_title", "kind", "created_by", "member_count", "last_seq", "created_at")
    list_display_links = ("id", "display_title")
    list_filter = ("kind", "created_at")
    list_select_related = ("created_by",)
    search_fields = ("=id", "title", "created_by__username", "memberships__user__username")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    readonly_fields = ("kind", "created_by", "created_at", "last_seq", "direct_key")

    @admin.display(description="title", ordering="title")
    def display_title(self, conversation):
        return str(conversation)

    @admin.display(description="members", ordering="member_count")
    def member_count(self, conversation):
        return conversation.member_count

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            member_count=Count("memberships", filter=Q(memberships__is_active=True))
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("title", "kind", "created_by", "created_at", "last_seq", "direct_key")})]
        if obj is not None and self.has_change_permission(request, obj):
            fieldsets.append(
                (
                    "Members",
                    {
                        "fields": MEMBER_FIELDS,
                        "description": "Added and removed through the same services as the API, "
                        "so the change is logged and announced to the members' devices.",
                    },
                )
            )
        return fieldsets

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.kind != Conversation.Kind.GROUP:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        """Apply the form through the services instead of saving the row."""
        data = form.cleaned_data
        moderator = {"actor": request.user, "conversation_id": obj.pk, "as_moderator": True}
        if "title" in form.changed_data:
            rename_conversation(title=data["title"], **moderator)
        for user in data.get("add_members") or ():
            add_member(user_id=user.pk, role=data["add_role"], **moderator)
        for user in data.get("remove_members") or ():
            remove_member(user_id=user.pk, **moderator)
        obj.refresh_from_db()


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Memberships across conversations, read-only: members are added and removed
    on their conversation's page, through the services."""

    list_display = ("id", "conversation", "user", "role", "is_active", "joined_at", "joined_seq", "left_seq")
    list_filter = ("role", "is_active", "conversation__kind", "joined_at")
    list_select_related = ("conversation", "user")
    search_fields = ("user__username", "conversation__title", "=conversation__id")
    date_hierarchy = "joined_at"
    ordering = ("-joined_at", "-id")


# Messages


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


class MessageEditInline(admin.TabularInline):
    """Earlier bodies of the message, oldest first (erased when it is deleted)."""

    model = MessageEdit
    fields = ("version", "body", "edited_by", "edited_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
        "id", "conversation", "seq", "sender", "short_body", "version", "created_at", "edited_at", "is_deleted",
    )
    list_display_links = ("id", "short_body")
    list_filter = (MessageStateFilter, "conversation__kind", "created_at")
    list_select_related = ("conversation", "sender")
    search_fields = ("=id", "body", "client_msg_id", "sender__username", "conversation__title")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    fields = (
        "conversation", "seq", "sender", "sender_device", "client_msg_id", "reply_to",
        "version", "created_at", "edited_at", "deleted_at", "body", "expected_version",
    )
    readonly_fields = (
        "conversation", "seq", "sender", "sender_device", "client_msg_id", "reply_to",
        "version", "created_at", "edited_at", "deleted_at",
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
