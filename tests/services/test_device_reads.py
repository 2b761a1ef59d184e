"""The device behind a token: the read every handshake and REST request makes."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import Device
from devices.selectors import device_for_token
from devices.services import revoke_device

pytestmark = pytest.mark.django_db


def test_a_token_finds_its_device_and_user(make_user, make_device):
    user = make_user(email="ann@example.com")
    device, token = make_device(user, "phone")
    found = device_for_token(token)
    assert (found.pk, found.name, found.user.pk, found.user.get_username()) == (
        device.pk,
        "phone",
        user.pk,
        user.get_username(),
    )


@pytest.mark.parametrize("how", ["revoked", "user deactivated", "unknown", "empty"])
def test_no_device_for_a_token_that_does_not_work(make_user, make_device, how):
    user = make_user()
    device, token = make_device(user)
    if how == "revoked":
        revoke_device(device=device)
    elif how == "user deactivated":
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    elif how == "unknown":
        token = token[:-4] + "abcd"
    else:
        token = ""
    assert device_for_token(token) is None


@pytest.mark.postgres
def test_on_postgresql_it_is_one_query_that_builds_what_the_orm_builds(make_user, make_device):
    user = make_user(email="bo@example.com", first_name="Bo")
    device, token = make_device(user)
    Device.objects.filter(pk=device.pk).update(last_used_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        found = device_for_token(token)
    assert len(queries) == 1
    expected = Device.objects.select_related("user").get(pk=device.pk)
    for got, want in ((found, expected), (found.user, expected.user)):
        for field in type(want)._meta.concrete_fields:
            value, wanted = getattr(got, field.attname), getattr(want, field.attname)
            assert (value, type(value)) == (wanted, type(wanted)), field.attname
        assert got._state.adding is False and got._state.db == want._state.db
    assert found.last_used_at.tzinfo is not None


def test_a_connection_keeps_only_what_its_requests_use(make_user, make_device, django_assert_num_queries):
    from gateway.auth import kept_for_connection

    user = make_user(email="cy@example.com")
    device, token = make_device(user, "tablet")
    kept = kept_for_connection(device_for_token(token))
    with django_assert_num_queries(0):
        assert (kept.pk, kept.user_id, kept.name) == (device.pk, user.pk, "tablet")
        assert (kept.user.pk, kept.user.get_username(), kept.user.is_active) == (user.pk, user.username, True)
    assert {"password", "email", "date_joined"} <= kept.user.get_deferred_fields()
    assert {"token_hash", "created_at"} <= kept.get_deferred_fields()
    with django_assert_num_queries(1):  # anything else is still there, read from the database
        assert kept.user.email == "cy@example.com"
