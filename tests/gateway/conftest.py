"""Fixtures for gateway tests: a Daphne process on the test database and Redis.

Without DATABASE_URL and REDIS_URL the server runs on the embedded defaults: the
SQLite test database file and an in-memory channel layer of its own. Whatever
the test process publishes then stays in the test process, so a test that needs
the server to hear of the test's own writes at once (through Redis), two server
processes, or PostgreSQL itself is marked `redis` or `postgres` where it is
defined, and is skipped there (a failure with REQUIRE_SERVICES=1, as in CI).
"""

import time

import pytest

from .harness import started_on_first_use

# Short limits so tests of resets, typing expiry and coalescing run quickly.
SHARED_SERVER_ENV = {
    "SYNC_MAX_CHANGES": "40",
    "TYPING_TIMEOUT": "1",
    "PRESENCE_COALESCE_SECONDS": "0.3",
    "RECEIPT_COALESCE_SECONDS": "0.2",
    "WS_RECONCILE_SECONDS": "0.5",
}


@pytest.fixture(scope="session")
def _shared_server(django_db_setup):
    with started_on_first_use(**SHARED_SERVER_ENV) as shared_server:
        yield shared_server


@pytest.fixture
def server(_shared_server, transactional_db):
    """The shared server; tests using it commit for real so the server sees their data.

    It starts with the first test that runs (a test that needs a missing service
    is skipped before). After the test, wait until the server has finished with
    the connections the test closed (each ends by writing the device's
    presence), so emptying the database does not race the server's last writes.
    """
    yield _shared_server()
    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gateway/" in item.nodeid:
            item.add_marker(pytest.mark.server)


@pytest.fixture
def account(make_user, make_device):
    """`await account(devices=2)` -> (user, [token, ...]): a user with logged-in devices."""
    from channels.db import database_sync_to_async

    @database_sync_to_async
    def create(devices=1, **user_fields):
        user = make_user(**user_fields)
        return user, [make_device(user, f"device{i}")[1] for i in range(devices)]

    return create
