"""The conversation admin: members inline, and renames and member changes that
go through the services, so they are logged and announced like any other."""

from django.urls import reverse

import conversations.admin.conversation as conversations_admin
from conversations.models import Change, Conversation, Membership
from conversations.services import remove_member

from .helpers import change_form_data


def change_url(conversation):
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def last_change(conversation):
    return Change.objects.filter(conversation=conversation).latest("seq")


def test_change_page_shows_the_members_inline(admin_client, world):
    response = admin_client.get(change_url(world["group"]))
    (inline,) = response.context["inline_admin_formsets"]
    members = [form.instance for form in inline.formset.forms]
    assert [(m.user.username, m.role, m.is_active) for m in members] == [
        ("alice", "owner", True),
        ("bob", "member", True),
    ]
    content = response.content.decode()
    assert 'id="memberships-group"' in content
    assert "alice" in content and "bob" in content
    # Read-only: no membership row is added, changed or deleted by hand.
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        False,
        False,
        False,
    )
    assert "memberships-0-DELETE" not in content


def test_rename_goes_through_the_service(admin_client, admin_user, world, published):
    group = world["group"]
    form = admin_client.get(change_url(group))
    response = admin_client.post(change_url(group), change_form_data(form, title="  Roadmap "))
    assert response.status_code == 302

    group.refresh_from_db()
    assert group.title == "Roadmap"
    change = last_change(group)
    assert (change.seq, change.kind, change.actor) == (group.last_seq, "conversation.renamed", admin_user)
    assert change.payload == {"title": "Roadmap", "previous_title": "Planning", "renamed_by": admin_user.pk}
    assert published == [("conversation.renamed", group.pk, group.last_seq, [])]


def test_saving_unchanged_form_changes_nothing(admin_client, world, published):
    group = world["group"]
    last_seq = Conversation.objects.get(pk=group.pk).last_seq
    form = admin_client.get(change_url(group))
    response = admin_client.post(change_url(group), change_form_data(form))
    assert response.status_code == 302
    assert Conversation.objects.get(pk=group.pk).last_seq == last_seq
    assert published == []


def test_adding_and_removing_members_goes_through_the_services(admin_client, admin_user, world, published):
    group, bob, carol = world["group"], world["bob"], world["carol"]
    form = admin_client.get(change_url(group))
    assert list(form.context["adminform"].form.fields["add_members"].queryset) == [admin_user, carol]
    assert list(form.context["adminform"].form.fields["remove_members"].queryset) == [world["alice"], bob]

    data = change_form_data(form, add_members=[str(carol.pk)], add_role="admin", remove_members=[str(bob.pk)])
    response = admin_client.post(change_url(group), data)
    assert response.status_code == 302

    group.refresh_from_db()
    carol_membership = Membership.objects.get(conversation=group, user=carol)
    bob_membership = Membership.objects.get(conversation=group, user=bob)
    assert (carol_membership.is_active, carol_membership.role) == (True, "admin")
    assert (bob_membership.is_active, bob_membership.left_seq) == (False, group.last_seq)

    added, removed = Change.objects.filter(conversation=group).order_by("-seq")[:2][::-1]
    assert (added.kind, added.actor, added.seq) == ("member.added", admin_user, carol_membership.joined_seq)
    assert added.payload["user"] == {"id": carol.pk, "username": "carol"}
    assert (added.payload["role"], added.payload["added_by"]) == ("admin", admin_user.pk)
    assert (removed.kind, removed.actor, removed.seq) == ("member.removed", admin_user, group.last_seq)
    assert removed.payload == {
        "user": {"id": bob.pk, "username": "bob"},
        "removed_by": admin_user.pk,
        "new_owner": None,
    }
    assert published == [
        ("member.added", group.pk, added.seq, [carol.pk]),
        ("member.removed", group.pk, removed.seq, [bob.pk]),
    ]


def test_removing_the_owner_passes_ownership(admin_client, world):
    group, alice, bob = world["group"], world["alice"], world["bob"]
    form = admin_client.get(change_url(group))
    admin_client.post(change_url(group), change_form_data(form, remove_members=[str(alice.pk)]))
    assert Membership.objects.get(conversation=group, user=bob).role == "owner"
    assert last_change(group).payload["new_owner"] == bob.pk


def test_an_existing_member_is_not_offered_for_adding(admin_client, world):
    group, bob = world["group"], world["bob"]
    last_seq = Conversation.objects.get(pk=group.pk).last_seq
    form = admin_client.get(change_url(group))
    response = admin_client.post(change_url(group), change_form_data(form, add_members=[str(bob.pk)]))
    assert response.status_code == 200
    assert "add_members" in response.context["adminform"].form.errors
    assert Conversation.objects.get(pk=group.pk).last_seq == last_seq


def test_a_member_who_left_since_the_form_was_shown_is_a_form_error(admin_client, world):
    group, bob = world["group"], world["bob"]
    form = admin_client.get(change_url(group))
    remove_member(actor=bob, conversation_id=group.pk, user_id=bob.pk)  # bob leaves meanwhile
    last_seq = Conversation.objects.get(pk=group.pk).last_seq

    response = admin_client.post(change_url(group), change_form_data(form, remove_members=[str(bob.pk)]))
    assert response.status_code == 200
    assert "remove_members" in response.context["adminform"].form.errors
    assert Conversation.objects.get(pk=group.pk).last_seq == last_seq


def test_a_service_refusal_during_save_is_a_message_and_rolls_back(admin_client, world, monkeypatch):
    """bob leaves after the form validated but before the admin's removal runs:
    the service refuses, and the rename saved just before is undone too."""
    group, bob = world["group"], world["bob"]

    def bob_leaves_first(**kwargs):
        remove_member(actor=bob, conversation_id=group.pk, user_id=bob.pk)
        return remove_member(**kwargs)

    monkeypatch.setattr(conversations_admin, "remove_member", bob_leaves_first)
    last_seq = Conversation.objects.get(pk=group.pk).last_seq
    form = admin_client.get(change_url(group))
    data = change_form_data(form, title="Roadmap", remove_members=[str(bob.pk)])
    response = admin_client.post(change_url(group), data, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(change_url(group), 302)]
    group.refresh_from_db()
    assert (group.title, group.last_seq) == ("Planning", last_seq)
    assert Membership.objects.get(conversation=group, user=bob).is_active
    assert [str(m) for m in response.context["messages"]] == ["Member not found. Nothing was saved."]


def test_direct_conversation_is_view_only(admin_client, world):
    direct = world["direct"]
    response = admin_client.get(change_url(direct))
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert "add_members" not in response.content.decode()
    assert admin_client.post(change_url(direct), {"title": "x"}).status_code == 403


def test_no_add_and_no_delete(admin_client, world):
    group = world["group"]
    assert admin_client.get(reverse("admin:conversations_conversation_add")).status_code == 403
    delete_url = reverse("admin:conversations_conversation_delete", args=[group.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=group.pk).exists()


def test_member_autocomplete_offers_users(admin_client, world):
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "conversations", "model_name": "membership", "field_name": "user", "term": "car"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["carol"]
