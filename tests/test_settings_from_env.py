"""Settings come from the environment, with embedded defaults for a fresh machine,
and production settings pass Django's deployment checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_sync.settings import Env

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']), "
    "'pool': s.DATABASES['default'].get('OPTIONS', {}).get('pool'), "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'hosts': s.ALLOWED_HOSTS, 'debug': s.DEBUG, "
    "'cache': s.CACHES['default']}))"
)
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "REQUIRE_SERVICES")


def run(args, **env):
    base = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    base["DJANGO_SETTINGS_MODULE"] = "realtime_sync.settings"
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def probe(**env) -> dict:
    result = run(["-c", PROBE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fresh_machine_defaults_are_sqlite_and_the_in_memory_layer():
    settings = probe(DEBUG="1")
    assert settings["db"] == "django.db.backends.sqlite3"
    assert settings["name"].endswith("db.sqlite3")
    assert settings["layer"] == "channels.layers.InMemoryChannelLayer"
    assert settings["debug"] is True
    assert "localhost" in settings["hosts"]
    assert settings["cache"] == {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def test_services_are_chosen_by_url():
    settings = probe(
        SECRET_KEY="x" * 60,
        DATABASE_URL="postgres://app@db.internal:5433/chat",
        REDIS_URL="redis://cache.internal:6379/0",
        ALLOWED_HOSTS="chat.example.com, api.example.com",
        DB_POOL_MAX_SIZE="7",
    )
    assert settings["db"] == "core.postgresql"  # Django's, with a cheaper pool check
    assert settings["name"] == "chat"
    assert settings["pool"]["max_size"] == 7
    assert settings["layer"] == "core.channel_layer.BoundedRedisChannelLayer"
    assert settings["hosts"] == ["chat.example.com", "api.example.com"]
    assert settings["debug"] is False
    assert settings["cache"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://cache.internal:6379/0",
        "KEY_PREFIX": "cache",
    }


def test_empty_values_mean_what_they_meant_before():
    """An empty URL means no such service; an empty switch or list means its default."""
    settings = probe(DEBUG="1", DATABASE_URL="", REDIS_URL="", ALLOWED_HOSTS="")
    assert settings["db"] == "django.db.backends.sqlite3"
    assert settings["layer"] == "channels.layers.InMemoryChannelLayer"
    assert settings["cache"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert settings["hosts"] == ["localhost", "127.0.0.1", "[::1]"]

    assert probe(DEBUG="", SECRET_KEY="x" * 60)["debug"] is False


def test_production_refuses_to_start_without_a_secret_key():
    result = run(["-c", PROBE])
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        SECRET_KEY="a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
        ALLOWED_HOSTS="chat.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def reader(**environment) -> Env:
    env = Env()
    env.ENVIRON = environment
    return env


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("off", False), ("y", False)]
    + [("2", False), ("ok", False)],
)
def test_a_switch_is_on_only_for_1_true_yes_or_on(value, expected):
    assert reader(X=value).bool("X", default=not expected) is expected


def test_an_empty_switch_or_list_is_unset_and_an_empty_string_stays_empty():
    env = reader(X="")
    assert env.bool("X", default=True) is True
    assert env.list("X", default=["a"]) == ["a"]
    assert env.str("X", default="fallback") == ""


def test_a_list_is_comma_separated_with_items_stripped_and_blanks_dropped():
    assert reader(X=" a.com, b.com ,, ").list("X", default=[]) == ["a.com", "b.com"]


def test_a_value_starting_with_a_dollar_is_taken_as_it_is():
    """django-environ would read "$OTHER" as the value of OTHER; a secret key may start with "$"."""
    assert reader(SECRET_KEY="$OTHER", OTHER="no").str("SECRET_KEY", default="") == "$OTHER"


def test_numbers_are_read_as_python_reads_them():
    env = reader(F="1e1", I=" 7 ")
    assert env.float("F", default=0.0) == 10.0
    assert env.int("I", default=0) == 7
    assert env.float("MISSING", default=0.5) == 0.5
    with pytest.raises(ValueError):
        reader(F="").float("F", default=1.0)
