"""The layer's clean-up after a receive survives Redis going away: its error
is logged, not left in a task nobody reads (a traceback in the log)."""

import socket

from core.channel_layer import BoundedRedisChannelLayer


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_clearing_the_backup_queue_without_redis_raises_nothing(caplog):
    layer = BoundedRedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{closed_port()}/0"}], pool_timeout=1)
    caplog.set_level("INFO", logger="core.channel_layer")
    await layer._clean_receive_backup(0, "specific.gone!")
    assert "backup queue failed" in caplog.text
