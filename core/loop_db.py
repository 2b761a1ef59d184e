"""PostgreSQL connections of the event loop itself, for the send's one statement.

A send on PostgreSQL is one statement (conversations/services/send_statement.py).
Run through `on_write_threads`, its thread hand-off, a pooled connection checked
out and back, and the thread's turns for the GIL cost the server two to three
times the statement itself: timed in one process, 0.9–1.6 ms of CPU per send
against 0.36–0.52 ms for the same statement awaited on the loop (psycopg's
AsyncConnection). At hundreds of sends a second, that difference is most of a
core.

So each loop keeps a few connections of its own (`DB_LOOP_CONNECTIONS`, 0 turns
this off and sends go through the write threads again): autocommit, the
default database's parameters, at most that many at once; a send waits up to
`DB_POOL_TIMEOUT` for one. A connection is checked before each use as the
threads' pool checks its own (core/db_pool.py: no round trip unless its socket
has something to say), one that failed during a use is closed, and errors come
out as Django's database exceptions, as from the ORM.

Connections belong to the loop that opened them (psycopg waits on the running
loop). A loop that closed leaves its connections behind: they are closed when
the next loop opens its first one, and by `close_all` at exit (and at the end of
the tests, before their database is dropped).
"""

import asyncio
import atexit
import functools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from django.conf import settings
from django.db import connections, utils

from observability import metrics

from .db_pool import has_input


class NoConnection(utils.OperationalError):
    """No loop connection came free within DB_POOL_TIMEOUT."""


def enabled() -> bool:
    return settings.DB_LOOP_CONNECTIONS > 0 and _default_is_postgresql()


@functools.cache
def _default_is_postgresql() -> bool:
    """Asked once: each lookup of the loop thread's connection handler cost
    about a seventh of the send's own time on the loop (py-spy)."""
    return connections["default"].vendor == "postgresql"


@asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection of the running loop for the block, in autocommit mode.
    psycopg's errors inside the block come out as Django's."""
    connections_of_loop = _of_running_loop()
    conn = await connections_of_loop.take()
    try:
        yield conn
    except psycopg.Error:
        connections_of_loop.give_back(conn)
        with _as_djangos():
            raise
    except BaseException:
        # Cancelled (or failed) with a statement possibly in flight: its state
        # is unknown, so the connection goes.
        connections_of_loop.discard(conn)
        raise
    else:
        connections_of_loop.give_back(conn)


def _as_djangos():
    """Django's own mapping of psycopg's exceptions to django.db's, as the
    ORM raises them (the loop thread's connection wrapper only notes that an
    error occurred; it holds no connection)."""
    return connections["default"].wrap_database_errors


class LoopConnections:
    """The connections of one loop: idle ones, and a bound on all of them."""

    def __init__(self, size: int, timeout: float):
        self.timeout = timeout
        self.slots = asyncio.Semaphore(size)
        self.idle: list[psycopg.AsyncConnection] = []
        self.all: set[psycopg.AsyncConnection] = set()

    async def take(self) -> psycopg.AsyncConnection:
        if self.slots.locked():  # wait_for wraps the wait in a task: only when there is one
            metrics.DB_LOOP_WAITS.inc()
            try:
                await asyncio.wait_for(self.slots.acquire(), self.timeout)
            except TimeoutError:
                metrics.DB_LOOP_ERRORS.inc()
                message = f"no database connection of the event loop came free within {self.timeout:g} s"
                raise NoConnection(message) from None
        else:
            await self.slots.acquire()
        try:
            while self.idle:
                conn = self.idle.pop()
                if await _usable(conn):
                    metrics.DB_LOOP_IN_USE.inc()
                    return conn
                metrics.DB_LOOP_LOST.inc()
                self._close(conn)
            conn = await self._connect()
            metrics.DB_LOOP_IN_USE.inc()
            return conn
        except BaseException:
            self.slots.release()
            raise

    def give_back(self, conn: psycopg.AsyncConnection) -> None:
        metrics.DB_LOOP_IN_USE.dec()
        if conn.broken or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            metrics.DB_LOOP_LOST.inc()
            self._close(conn)
        else:
            self.idle.append(conn)
        self.slots.release()

    def discard(self, conn: psycopg.AsyncConnection) -> None:
        metrics.DB_LOOP_IN_USE.dec()
        self._close(conn)
        self.slots.release()

    def close(self) -> None:
        for conn in list(self.all):
            self._close(conn)
        self.idle.clear()

    def _close(self, conn: psycopg.AsyncConnection) -> None:
        """Close without the loop (pgconn.finish is libpq's, synchronous): also
        for a loop that is gone."""
        if conn in self.all:
            self.all.discard(conn)
            metrics.DB_LOOP_CONNECTIONS.dec()
        if not conn.closed:
            conn._closed = True  # what AsyncConnection.close() sets before the same call
            conn.pgconn.finish()

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = None
        try:
            with _as_djangos():
                conn = await psycopg.AsyncConnection.connect(**_connection_parameters(), autocommit=True)
                self.all.add(conn)
                metrics.DB_LOOP_CONNECTIONS.inc()
                timezone_name = connections["default"].timezone_name  # as Django sets its own
                if conn.info.parameter_status("TimeZone") != timezone_name:
                    await conn.execute("SELECT set_config('TimeZone', %s, false)", [timezone_name])
                return conn
        except BaseException:
            if conn is not None:
                self._close(conn)
            raise


def _connection_parameters() -> dict:
    """The default database's, as Django connects with them (the test
    database's in tests), less what only Django's own cursors understand."""
    database = connections["default"]
    parameters = database.get_connection_params()
    parameters.pop("cursor_factory", None)
    parameters.setdefault("connect_timeout", max(1, round(_wait_limit())))
    return parameters


def _wait_limit() -> float:
    """The threads' pool's timeout (DB_POOL_TIMEOUT): how long a send waits for a connection."""
    pool = connections["default"].settings_dict["OPTIONS"].get("pool")
    return float(pool.get("timeout", 30.0)) if isinstance(pool, dict) else 30.0


async def _usable(conn: psycopg.AsyncConnection) -> bool:
    """core/db_pool.py's check, awaited: a round trip only for a connection
    whose socket has something to read (a dead one's termination notice)."""
    if conn.closed:
        return False
    if not has_input(conn):
        return True
    try:
        await conn.execute("")
    except psycopg.Error:
        return False
    return True


# Held strongly: a loop that closed is let go (and its connections closed) only
# here, so none is left open unseen.
_by_loop: dict[asyncio.AbstractEventLoop, LoopConnections] = {}
_lock = threading.Lock()


def _of_running_loop() -> LoopConnections:
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        with _lock:
            for other_loop, others in list(_by_loop.items()):
                if other_loop.is_closed():
                    others.close()
                    del _by_loop[other_loop]
            found = _by_loop[loop] = LoopConnections(settings.DB_LOOP_CONNECTIONS, _wait_limit())
    return found


def close_all() -> None:
    """Close every loop's connections, from any thread, without their loops."""
    with _lock:
        for connections_of_loop in list(_by_loop.values()):
            connections_of_loop.close()
        _by_loop.clear()


atexit.register(close_all)
