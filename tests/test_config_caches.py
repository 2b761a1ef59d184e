"""With Redis configured, the default cache is that Redis: the login throttle's count
is shared by every server process and survives a process's restart."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache, caches
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

pytestmark = [pytest.mark.redis, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/api/v1/auth/login"
LIMIT = 20  # REST_FRAMEWORK's "login" rate: 20/min

# Another server process: it takes LIMIT log-in attempts from one address, then exits.
OTHER_PROCESS = f"""
import sys, django
django.setup()
from rest_framework.test import APIClient
client = APIClient()
print(*(client.post("{LOGIN}", {{}}, format="json", REMOTE_ADDR=sys.argv[1]).status_code for _ in range({LIMIT})))
"""


@pytest.fixture
def address():
    """A client address of this test's own, its throttle count cleared before and after.

    Only this key is deleted: cache.clear() would empty the whole Redis database,
    channels-redis's keys included.
    """
    address = f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"
    key = ScopedRateThrottle.cache_format % {"scope": "login", "ident": address}
    cache.delete(key)
    yield address
    cache.delete(key)


def throttle_count(cache_client, address) -> int:
    return len(cache_client.get(ScopedRateThrottle.cache_format % {"scope": "login", "ident": address}, []))


def test_the_cache_is_redis_at_redis_url_under_its_own_prefix(address):
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL

    cache.set(f"probe-{address}", 1)
    try:
        raw = redis.Redis.from_url(settings.REDIS_URL)
        assert raw.exists(f"cache:1:probe-{address}")
        raw.close()
    finally:
        cache.delete(f"probe-{address}")


def test_two_cache_clients_see_the_same_throttle_count(address):
    one, other = caches.create_connection("default"), caches.create_connection("default")
    client = APIClient()
    for _ in range(3):
        client.post(LOGIN, {}, format="json", REMOTE_ADDR=address)

    assert throttle_count(one, address) == throttle_count(other, address) == 3
    one.close()
    other.close()


def test_the_login_limit_holds_across_processes_and_restarts(address):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "realtime_sync.test_settings"}
    other = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, address], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == ["400"] * LIMIT  # counted there; that process has exited

    blocked = APIClient().post(LOGIN, {}, format="json", REMOTE_ADDR=address)

    assert blocked.status_code == 429
    assert blocked.json()["code"] == "throttled"
