"""The channel layer through Redis Sentinel: a real sentinel watching the real
Redis, configured the way production would configure it."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import asyncio, json, django
django.setup()
from channels.layers import get_channel_layer
from django.conf import settings
async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("sentinel-check", channel)
    await layer.group_send("sentinel-check", {"type": "check", "n": 42})
    message = await asyncio.wait_for(layer.receive(channel), 10)
    print(json.dumps({"hosts": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["master_name"], "n": message["n"]}))
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.redis
def test_the_layer_finds_its_master_through_sentinel(tmp_path):
    redis = urlsplit(settings.REDIS_URL)
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor realtime {redis.hostname} {redis.port or 6379} 1\n"
    )
    sentinel = subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
            "DJANGO_SETTINGS_MODULE": "realtime_sync.test_settings",
            "REDIS_SENTINELS": f"127.0.0.1:{port}",
            "REDIS_SENTINEL_MASTER": "realtime",
            "REDIS_DB": (redis.path or "/0").lstrip("/") or "0",
        }
        result = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == '{"hosts": "realtime", "n": 42}'
    finally:
        sentinel.terminate()
        sentinel.wait(10)
