"""The writes a device waits on have threads of their own."""

import asyncio
import os
import threading

from core.db import on_db_pool, on_write_threads


async def test_a_write_runs_while_every_shared_thread_is_busy():
    release = threading.Event()
    shared_threads = min(32, (os.cpu_count() or 1) + 4)  # the default executor's size
    busy = [asyncio.create_task(on_db_pool(release.wait)(10)) for _ in range(shared_threads + 2)]
    try:
        name = await asyncio.wait_for(on_write_threads(lambda: threading.current_thread().name)(), 5)
        assert name.startswith("db-writes")
    finally:
        release.set()
        await asyncio.gather(*busy)
