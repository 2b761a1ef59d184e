"""Settings come from the environment, with embedded defaults for a fresh machine,
and production settings pass Django's deployment checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']), "
    "'pool': s.DATABASES['default'].get('OPTIONS', {}).get('pool'), "
    "'health_checks': s.DATABASES['default'].get('CONN_HEALTH_CHECKS'), "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'hosts': s.ALLOWED_HOSTS, 'debug': s.DEBUG}))"
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


def test_services_are_chosen_by_url():
    settings = probe(
        SECRET_KEY="x" * 60,
        DATABASE_URL="postgres://app@db.internal:5433/chat",
        REDIS_URL="redis://cache.internal:6379/0",
        ALLOWED_HOSTS="chat.example.com, api.example.com",
        DB_POOL_MAX_SIZE="7",
    )
    assert settings["db"] == "django.db.backends.postgresql"
    assert settings["name"] == "chat"
    assert settings["pool"]["max_size"] == 7
    assert settings["health_checks"] is True
    assert settings["layer"] == "channels_redis.core.RedisChannelLayer"
    assert settings["hosts"] == ["chat.example.com", "api.example.com"]
    assert settings["debug"] is False


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
