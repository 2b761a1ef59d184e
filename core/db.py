"""Running ORM work from the event loop.

Channels runs every `database_sync_to_async` call of a process on one shared
thread; the gateway's reads and writes are independent of each other, so they
run on thread pools instead, and one slow query does not hold up the rest.

Two pools: the writes a device waits on for its `ok` (send, edit, delete,
receipts) have threads of their own (DB_WRITE_THREADS), so a reconnect storm's
catch-up reads and presence writes, which fill the shared pool, do not queue
the sends of the devices that are already live.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings

_write_executor: ThreadPoolExecutor | None = None
_write_executor_lock = threading.Lock()


def on_db_pool(function):
    return database_sync_to_async(function, thread_sensitive=False)


def on_write_threads(function):
    """`on_db_pool` for the writes a device waits on, on their own threads."""
    return database_sync_to_async(function, thread_sensitive=False, executor=write_executor())


def write_executor() -> ThreadPoolExecutor:
    global _write_executor
    if _write_executor is None:
        with _write_executor_lock:
            if _write_executor is None:
                _write_executor = ThreadPoolExecutor(settings.DB_WRITE_THREADS, thread_name_prefix="db-writes")
    return _write_executor
