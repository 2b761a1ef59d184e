"""Fixtures for gateway tests: a Daphne process on the test database and Redis."""

import pytest

from .harness import ServerProcess



@pytest.fixture(scope="session")
def _server(django_db_setup, django_db_blocker):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or not settings.REDIS_URL:
        yield None  # the tests themselves skip (or fail in CI) with the reason
        return
    server = ServerProcess(SYNC_MAX_CHANGES="40").start()
    yield server
    server.stop()


@pytest.fixture
def server(_server, transactional_db):
    """The shared server; tests using it commit for real so the server sees their data."""
    assert _server is not None
    return _server


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
