"""Running ORM work from the event loop.

Channels runs every `database_sync_to_async` call of a process on one shared
thread; the gateway's reads and writes are independent of each other, so they
run on the thread pool instead, and one slow query does not hold up the rest.
"""

from channels.db import database_sync_to_async


def on_db_pool(function):
    return database_sync_to_async(function, thread_sensitive=False)
