"""The check each pooled PostgreSQL connection passes before it is handed out.

Django's own (CONN_HEALTH_CHECKS with the pool) is psycopg_pool's
`check_connection`: an empty query, one round trip on every checkout. Every
`database_sync_to_async` call checks a connection out, so a reconnecting
device paid three or four of them (its handshake, its presence, its sync),
a fifth of a reconnect storm's server samples (py-spy, bench/storm.py).

A connection that died with a PostgreSQL restart or a terminated backend
has something to read while it sits idle in the pool: the server's
termination notice, then the end of the stream. So the socket is looked at
first, without a round trip; only a connection with something to read (or a
closed one) gets the full check, which fails on a dead one, and the pool then
discards it and hands out another. A server that vanished without a word (a
network partition) is not seen by either check: the query after it waits for
the connection's timeouts, as it would have after a round-trip check.

Imported by the settings, so nothing of Django's here.
"""

import select

from psycopg_pool import ConnectionPool


def check_connection(connection) -> None:
    """Return quietly if the connection looks usable, raise if it is not
    (psycopg_pool's `check` contract)."""
    if connection.closed or has_input(connection):
        ConnectionPool.check_connection(connection)


def has_input(connection) -> bool:
    """Whether an idle connection's socket has anything to read (a notice, an
    error, the end of the stream): nothing should come unasked. poll, not
    select: a server process has thousands of sockets, and select refuses a
    descriptor past 1023."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
