"""Conversations and memberships in the admin: members change through the services."""

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from core.admin_mixins import ReadOnlyAdminMixin

from ..models import Conversation, Membership
from ..services import add_member, remove_member, rename_conversation
from ..services.members import ADDABLE_ROLES
from ..validation import clean_title
from .base import ServiceErrorsAsMessagesMixin, as_validation_error


class MembershipInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The conversation's members, read-only: membership changes go through the
    conversation form's "Members" fields, which call the services."""

    model = Membership
    fields = ("user", "role", "is_active", "joined_at", "joined_seq", "left_at", "left_seq")
    readonly_fields = fields
    ordering = ("-is_active", "joined_at", "id")
    extra = 0
    can_delete = False
    show_change_link = True


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
        return (
            super()
            .get_queryset(request)
            .annotate(member_count=Count("memberships", filter=Q(memberships__is_active=True)))
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
