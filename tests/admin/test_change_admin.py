"""The change log is view-only in the admin, for superusers and staff alike."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from conversations.models import Change

CHANGELIST = reverse("admin:conversations_change_changelist")
ADD = reverse("admin:conversations_change_add")


def url(view, change):
    return reverse(f"admin:conversations_change_{view}", args=[change.pk])


@pytest.fixture
def created(world):
    return Change.objects.get(conversation=world["group"], seq=1)


def test_change_page_shows_the_entry_without_buttons(admin_client, world, created):
    response = admin_client.get(url("change", created))
    assert response.status_code == 200
    content = response.content.decode()
    assert "conversation.created" in content
    assert "&quot;title&quot;: &quot;Planning&quot;" in content  # the payload, pretty-printed
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert "deletelink" not in content
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False


def test_add_change_and_delete_are_refused(admin_client, world, created):
    payload = dict(created.payload)
    assert admin_client.get(ADD).status_code == 403
    assert admin_client.post(ADD, {"kind": "message.created", "seq": 99}).status_code == 403
    assert admin_client.post(url("change", created), {"kind": "message.deleted"}).status_code == 403
    assert admin_client.get(url("delete", created)).status_code == 403
    assert admin_client.post(url("delete", created), {"post": "yes"}).status_code == 403
    created.refresh_from_db()
    assert (created.kind, created.payload) == ("conversation.created", payload)


def test_no_bulk_delete_action(admin_client, world, created):
    response = admin_client.get(CHANGELIST)
    assert "delete_selected" not in response.context["cl"].model_admin.get_actions(response.wsgi_request)
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [created.pk], "post": "yes"}
    )
    assert Change.objects.filter(pk=created.pk).exists()


def test_staff_with_view_permission_can_read_the_log(make_user, world, created):
    staff = make_user("auditor", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_change", content_type__app_label="conversations"))
    client = Client()
    client.force_login(staff)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert created in response.context["cl"].result_list
    assert client.get(url("change", created)).status_code == 200
    assert client.post(url("change", created), {}).status_code == 403


def test_staff_without_permission_cannot_read_the_log(make_user, world, created):
    staff = make_user("intern", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(url("change", created)).status_code == 403
