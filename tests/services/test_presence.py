"""Presence services: aggregation over devices, connection ownership, expiry."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.services import create_conversation
from core.errors import InvalidInput
from devices.services import revoke_device
from gateway.auth import still_active_then_online
from presence import services as presence_services
from presence.models import DevicePresence, UserPresence
from presence.selectors import contacts_of, presences_for
from presence.services import (
    device_offline,
    device_online,
    expire_stale,
    new_connection_id,
    online_if_active,
    refresh,
)
from tests.threads import run_in_threads

pytestmark = pytest.mark.django_db


def status_of(user):
    return UserPresence.objects.get(user=user).status


def test_the_highest_device_status_wins(make_user, make_device):
    user = make_user()
    (phone, _), (laptop, _) = make_device(user, "phone"), make_device(user, "laptop")
    assert device_online(device=phone, connection_id="p", status="away") is True
    assert status_of(user) == "away"
    assert device_online(device=laptop, connection_id="l", status="busy") is True
    assert status_of(user) == "busy"
    assert device_online(device=phone, connection_id="p", status="online") is True
    assert device_online(device=laptop, connection_id="l", status="away") is False  # still online
    assert device_offline(device=phone, connection_id="p") is True
    assert status_of(user) == "away"
    assert device_offline(device=laptop, connection_id="l") is True
    presence = UserPresence.objects.get(user=user)
    assert presence.status == "offline" and presence.last_seen_at is not None


def test_an_older_connection_closing_leaves_the_newer_one_online(make_user, make_device):
    user = make_user()
    device, _ = make_device(user)
    old, new = new_connection_id(), new_connection_id()
    device_online(device=device, connection_id=old)
    device_online(device=device, connection_id=new)
    assert device_offline(device=device, connection_id=old) is False
    assert status_of(user) == "online"


def test_an_older_connection_writing_late_does_not_take_the_device_back(make_user, make_device):
    """A device reconnects while its old connection's online write still waits:
    the old one writes last, then closes. The device stays online under the new."""
    user = make_user()
    device, _ = make_device(user)
    old, new = new_connection_id(), new_connection_id()
    assert old < new
    assert device_online(device=device, connection_id=new) is True
    assert device_online(device=device, connection_id=old) is False
    assert device_offline(device=device, connection_id=old) is False
    assert status_of(user) == "online"
    assert DevicePresence.objects.get(device=device).connection_id == new


def test_only_settable_statuses(make_user, make_device):
    device, _ = make_device(make_user())
    for status in ("offline", "invisible", None):
        with pytest.raises(InvalidInput):
            device_online(device=device, connection_id="c", status=status)


def test_unrefreshed_devices_expire_and_refreshed_ones_stay(make_user, make_device):
    alice, bob = make_user(), make_user()
    (alice_device, _), (bob_device, _) = make_device(alice), make_device(bob)
    device_online(device=alice_device, connection_id="a")
    device_online(device=bob_device, connection_id="b")
    long_ago = timezone.now() - timedelta(seconds=120)
    DevicePresence.objects.update(last_heartbeat_at=long_ago)
    assert refresh(["b"]) == 1  # bob's server is alive
    assert expire_stale(timeout=60) == [alice.pk]
    assert (status_of(alice), status_of(bob)) == ("offline", "online")
    assert UserPresence.objects.get(user=alice).last_seen_at == long_ago
    assert expire_stale(timeout=60) == []


def test_revoked_devices_do_not_count(make_user, make_device):
    user = make_user()
    (phone, _), (laptop, _) = make_device(user), make_device(user)
    device_online(device=phone, connection_id="p")
    device_online(device=laptop, connection_id="l", status="away")
    revoke_device(device=phone)
    device_online(device=laptop, connection_id="l", status="away")
    assert status_of(user) == "away"


def test_presence_is_visible_to_contacts_only(make_user, make_device):
    alice, bob, stranger = make_user(), make_user(), make_user()
    create_conversation(creator=alice, kind="direct", member_ids=[bob.pk])
    device, _ = make_device(alice)
    device_online(device=device, connection_id="a")
    assert contacts_of(bob.pk) == sorted([alice.pk, bob.pk])
    seen_by_bob = {p["user_id"]: p["status"] for p in presences_for(bob)}
    assert seen_by_bob == {alice.pk: "online", bob.pk: "offline"}
    assert [p["user_id"] for p in presences_for(stranger)] == [stranger.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_devices_of_one_user_changing_at_once_leave_the_right_aggregate(make_user, make_device):
    """Each write locks the user's row before it reads the devices, so two
    devices changing together cannot both decide from a stale view."""
    user = make_user()
    devices = [make_device(user, f"d{i}")[0] for i in range(8)]
    for round_ in range(5):
        ids = {device.pk: new_connection_id() for device in devices}
        run_in_threads(len(devices), flipper(devices, ids, round_))
        assert DevicePresence.objects.filter(device__user=user, status="online").count() == 4
        assert status_of(user) == "online"
        run_in_threads(
            len(devices), lambda i, ids=ids: device_offline(device=devices[i], connection_id=ids[devices[i].pk])
        )
        assert status_of(user) == "offline"


def flipper(devices, ids, round_):
    """Half of the devices come online; the other half come online and go offline."""

    def flip(i):
        device = devices[i]
        device_online(device=device, connection_id=ids[device.pk])
        if (i + round_) % 2 == 0:
            device_offline(device=device, connection_id=ids[device.pk])

    return flip


def test_a_handshake_marks_an_active_device_online(make_user, make_device):
    user = make_user()
    device, _ = make_device(user)
    assert online_if_active(device=device, connection_id=new_connection_id()) == (True, True)
    assert status_of(user) == "online"
    assert online_if_active(device=device, connection_id=new_connection_id()) == (True, False)  # already online


@pytest.mark.parametrize("how", ["revoked", "user deactivated"])
def test_a_handshake_of_a_device_no_longer_active_changes_nothing(make_user, make_device, how):
    user = make_user()
    device, _ = make_device(user)
    if how == "revoked":
        revoke_device(device=device)
    else:
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert online_if_active(device=device, connection_id=new_connection_id()) == (False, False)
    assert not DevicePresence.objects.filter(device=device).exists()
    assert not UserPresence.objects.filter(user=user, status="online").exists()


@pytest.mark.postgres
def test_on_postgresql_a_handshake_and_a_close_are_one_statement_each(make_user, make_device):
    device, _ = make_device(make_user())
    connection_id = new_connection_id()
    with CaptureQueriesContext(connection) as online:
        assert online_if_active(device=device, connection_id=connection_id) == (True, True)
    with CaptureQueriesContext(connection) as offline:
        assert device_offline(device=device, connection_id=connection_id) is True
    assert (len(online), len(offline)) == (1, 1)


def test_a_handshake_whose_presence_write_fails_still_learns_whether_the_device_is_active(
    make_user, make_device, monkeypatch, caplog
):
    """Presence is state the next refresh sets right; whether a revoked device
    may stay connected is not, so the check is made on its own."""
    active, revoked = make_device(make_user())[0], make_device(make_user())[0]
    revoke_device(device=revoked)

    def fails(**_):
        raise DatabaseError("deadlock detected")

    monkeypatch.setattr(presence_services, "online_if_active", fails)
    handshake = still_active_then_online.func  # the function under its database-pool wrapper
    assert handshake(active, new_connection_id()) == (True, False)
    assert handshake(revoked, new_connection_id()) == (False, False)
    assert "marking device" in caplog.text and "deadlock detected" in caplog.text
