"""The device admin: revoke through the service; the token digest never shows."""

from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

import devices.services
from devices.models import Device

CHANGELIST = reverse("admin:devices_device_changelist")


def change_url(device):
    return reverse("admin:devices_device_change", args=[device.pk])


def test_token_hash_is_never_shown(admin_client, world):
    device = world["alice_laptop"]
    for page in (CHANGELIST, change_url(device)):
        content = admin_client.get(page).content.decode()
        assert device.name in content
        assert device.token_hash not in content
        assert "token hash" not in content.lower() and "token_hash" not in content


def test_revoke_action_revokes_through_the_service(admin_client, world, monkeypatch):
    announced = []
    monkeypatch.setattr(devices.services, "publish_device_revoked", lambda device: announced.append(device.pk))
    laptop, phone = world["alice_laptop"], world["bob_phone"]

    response = admin_client.post(CHANGELIST, {"action": "revoke_devices", "_selected_action": [laptop.pk]}, follow=True)

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Revoked 1 device(s)."]
    laptop.refresh_from_db()
    phone.refresh_from_db()
    assert laptop.revoked_at is not None
    assert phone.revoked_at is None
    assert announced == [laptop.pk]


def test_revoking_again_keeps_the_first_revocation(admin_client, world):
    laptop = world["alice_laptop"]
    admin_client.post(CHANGELIST, {"action": "revoke_devices", "_selected_action": [laptop.pk]})
    first = Device.objects.get(pk=laptop.pk).revoked_at
    admin_client.post(CHANGELIST, {"action": "revoke_devices", "_selected_action": [laptop.pk]})
    assert Device.objects.get(pk=laptop.pk).revoked_at == first


def test_status_filter(admin_client, world):
    laptop, phone = world["alice_laptop"], world["bob_phone"]
    admin_client.post(CHANGELIST, {"action": "revoke_devices", "_selected_action": [laptop.pk]})
    revoked = admin_client.get(CHANGELIST, {"status": "revoked"}).context["cl"].result_list
    active = admin_client.get(CHANGELIST, {"status": "active"}).context["cl"].result_list
    assert list(revoked) == [Device.objects.get(pk=laptop.pk)]
    assert list(active) == [phone]


def test_search_by_owner(admin_client, world):
    found = admin_client.get(CHANGELIST, {"q": "bob"}).context["cl"].result_list
    assert list(found) == [world["bob_phone"]]


def test_devices_are_not_added_edited_or_deleted_here(admin_client, world):
    laptop = world["alice_laptop"]
    assert admin_client.get(reverse("admin:devices_device_add")).status_code == 403
    assert admin_client.post(change_url(laptop), {"name": "renamed"}).status_code == 403
    delete = reverse("admin:devices_device_delete", args=[laptop.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Device.objects.get(pk=laptop.pk).name == "alice-laptop"


def test_view_only_staff_cannot_revoke(make_user, world):
    staff = make_user("support", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_device"))
    client = Client()
    client.force_login(staff)
    laptop = world["alice_laptop"]
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "revoke_devices" not in response.context["cl"].model_admin.get_actions(response.wsgi_request)
    client.post(CHANGELIST, {"action": "revoke_devices", "_selected_action": [laptop.pk]})
    assert Device.objects.get(pk=laptop.pk).revoked_at is None
