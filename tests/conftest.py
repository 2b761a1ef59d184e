"""Shared fixtures, and the rule for tests that need a real service.

A test marked `postgres` or `redis` is skipped, with the reason, when that
service is not configured, and one marked `node` or `browser` when Node.js (20
or later) or Chromium with Playwright is not installed, so the suite passes on a
fresh machine. With REQUIRE_SERVICES=1 (set by .ci/run) the same condition is a
failure instead: nothing that needs a service can go untested in CI by accident.
"""

import functools
import itertools
import os
import shutil
import subprocess

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from rest_framework.test import APIClient

from core import loop_db
from devices.services import issue_device

_usernames = itertools.count(1)


def _uses_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] in ("django.db.backends.postgresql", "core.postgresql")


def _uses_redis() -> bool:
    return settings.REDIS_HOST is not None


# Where the browser tests find Chromium (Debian's package; Playwright downloads none here).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@functools.cache
def node_command() -> list[str] | None:
    """`node` with what it needs for a global WebSocket (Node 22+: nothing; Node 20:
    --experimental-websocket), or None when there is no such Node.js."""
    node = shutil.which("node")
    if node is None:
        return None
    for flags in ([], ["--experimental-websocket"]):
        probe = [node, *flags, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"]
        if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
            return [node, *flags]
    return None


@functools.cache
def _has_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)


SERVICE_CHECKS = {
    "postgres": (_uses_postgres, "needs PostgreSQL: set DATABASE_URL=postgres://..."),
    "redis": (_uses_redis, "needs Redis: set REDIS_URL=redis://..."),
    "node": (
        lambda: node_command() is not None,
        "needs Node.js 20 or later (`node` on PATH) for the JS client's tests",
    ),
    "browser": (
        _has_browser,
        f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM) and the playwright "
        "package (requirements-dev.txt)",
    ),
}


def require(marker: str) -> None:
    """Skip (or with REQUIRE_SERVICES=1, fail) unless what `marker` needs is there;
    for fixtures broader than a test, which are set up before `_require_services`."""
    available, reason = SERVICE_CHECKS[marker]
    if not available():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _require_services(request):
    for marker in SERVICE_CHECKS:
        if request.node.get_closest_marker(marker):
            require(marker)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Close psycopg pools (and the event loops' own connections) before the
    test database is dropped: their connections would otherwise keep it
    "being accessed by other users"."""
    yield
    loop_db.close_all()
    with django_db_blocker.unblock():
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_deadlocks():
    """Emptying the database between tests (TRUNCATE) can deadlock with a server
    process's background work (presence refresh, log reconciliation) in the
    gateway tests; PostgreSQL aborts one side, so try the flush again."""
    from django.core.management.commands import flush
    from django.db import OperationalError

    original = flush.Command.handle

    def handle(self, *args, **options):
        for attempt in range(5):
            try:
                return original(self, *args, **options)
            except Exception as error:  # flush wraps the database error in CommandError
                cause = error.__cause__ or error
                if attempt == 4 or not (isinstance(cause, OperationalError) and "deadlock" in str(cause)):
                    raise

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


@pytest.fixture
def make_user(db):
    def make(username=None, password="correct horse battery staple", **extra):
        username = username or f"user{next(_usernames)}"
        return get_user_model().objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def make_device(db):
    def make(user, name="laptop"):
        issued = issue_device(user=user, name=name)
        return issued.device, issued.token

    return make


@pytest.fixture
def api_for(make_device):
    """A REST client authenticated as a new device of `user`."""

    def client_for(user, device_name="laptop"):
        device, token = make_device(user, device_name)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        client.device = device
        client.user = user
        return client

    return client_for
