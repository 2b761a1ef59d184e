"""Fixtures for gateway tests: a Daphne process on the test database and Redis."""

import time

import pytest

from .harness import ServerProcess

# Short limits so tests of resets, typing expiry and coalescing run quickly.
SHARED_SERVER_ENV = {
    "SYNC_MAX_CHANGES": "40",
    "TYPING_TIMEOUT": "1",
    "PRESENCE_COALESCE_SECONDS": "0.3",
    "RECEIPT_COALESCE_SECONDS": "0.2",
    "WS_RECONCILE_SECONDS": "0.5",
}


@pytest.fixture(scope="session")
def _server(django_db_setup, django_db_blocker):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or not settings.REDIS_URL:
        yield None  # the tests themselves skip (or fail in CI) with the reason
        return
    server = ServerProcess(**SHARED_SERVER_ENV).start()
    yield server
    server.stop()


@pytest.fixture
def server(_server, transactional_db):
    """The shared server; tests using it commit for real so the server sees their data.

    After the test, wait until the server has finished with the connections the
    test closed (each ends by writing the device's presence), so emptying the
    database does not race the server's last writes.
    """
    assert _server is not None
    yield _server
    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gateway/" in item.nodeid:
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def account(make_user, make_device):
    """`await account(devices=2)` -> (user, [token, ...]): a user with logged-in devices."""
    from channels.db import database_sync_to_async

    @database_sync_to_async
    def create(devices=1, **user_fields):
        user = make_user(**user_fields)
        return user, [make_device(user, f"device{i}")[1] for i in range(devices)]

    return create
