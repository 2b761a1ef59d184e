"""An admin who revokes a device or deactivates a user ends their live
connections at once, not at their next reconnect.

The admin runs in the test process and the server in its own: the event
crosses through Redis. The server here does no periodic reconciliation, so
nothing but that event can close the connections in time."""

import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from gateway import close_codes

from ..admin.helpers import change_form_data
from .conftest import SHARED_SERVER_ENV
from .harness import Device, ServerProcess

pytestmark = pytest.mark.redis

db = database_sync_to_async

CLOSE_WITHIN_SECONDS = 2.0


@pytest.fixture
def server_without_reconciliation(transactional_db):
    server = ServerProcess(**{**SHARED_SERVER_ENV, "WS_RECONCILE_SECONDS": "600"}).start()
    yield server
    server.stop()


@pytest.fixture
def admin_browser(transactional_db):
    admin = get_user_model().objects.create_superuser("root", password="root-password-42")
    browser = Client()
    browser.force_login(admin)
    return browser


async def closed_in_time(device: Device) -> int:
    started = time.monotonic()
    code = await device.wait_closed(timeout=CLOSE_WITHIN_SECONDS)
    assert time.monotonic() - started < CLOSE_WITHIN_SECONDS
    return code


async def test_deactivating_a_user_in_the_admin_closes_all_their_connections(
    server_without_reconciliation, admin_browser, account
):
    bob, tokens = await account(devices=2)
    _, (alice_token,) = await account()
    bobs = [await Device(server_without_reconciliation.url, token).connect() for token in tokens]
    alice = await Device(server_without_reconciliation.url, alice_token).connect()
    page = f"/admin/auth/user/{bob.pk}/change/"

    def deactivate():
        form = change_form_data(admin_browser.get(page))
        form.pop("is_active", None)  # an unticked checkbox is not sent
        for name in ("date_joined", "last_login"):  # split into date and time inputs on the page
            moment = form.pop(name, None)
            if moment is not None:
                form[f"{name}_0"], form[f"{name}_1"] = moment.date().isoformat(), moment.time().strftime("%H:%M:%S")
        response = admin_browser.post(page, form)
        assert response.status_code == 302, response.content[:500]

    await db(deactivate)()
    for device in bobs:
        assert await closed_in_time(device) == close_codes.DEVICE_REVOKED
    assert (await alice.request("ping"))["type"] == "pong"  # others stay
    await alice.close()


async def test_revoking_a_device_in_the_admin_closes_its_connection(
    server_without_reconciliation, admin_browser, account
):
    _, (phone_token, laptop_token) = await account(devices=2)
    phone = await Device(server_without_reconciliation.url, phone_token).connect()
    laptop = await Device(server_without_reconciliation.url, laptop_token).connect()

    def revoke():
        from devices.models import Device as DeviceRow

        phone_row = DeviceRow.objects.get(pk=phone.hello["device"]["id"])
        response = admin_browser.post(
            "/admin/devices/device/", {"action": "revoke_devices", "_selected_action": [phone_row.pk]}
        )
        assert response.status_code == 302

    await db(revoke)()
    assert await closed_in_time(phone) == close_codes.DEVICE_REVOKED
    assert (await laptop.request("ping"))["type"] == "pong"  # the user's other device stays
    await laptop.close()
