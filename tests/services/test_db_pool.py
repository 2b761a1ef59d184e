"""The pool's check on checkout (core/db_pool.py): no round trip for a
healthy connection, the full check for one whose server has gone."""

import os
import resource
import select

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from core import db_pool

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_connection():
    params = connection.get_connection_params()
    conn = psycopg.connect(**params, autocommit=True)
    yield conn
    conn.close()


def full_check_forbidden(conn):
    raise AssertionError("a healthy idle connection was checked with a round trip")


def test_a_healthy_idle_connection_passes_without_a_round_trip(pg_connection, monkeypatch):
    pg_connection.execute("SELECT 1")
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(full_check_forbidden))
    db_pool.check_connection(pg_connection)  # does not raise


class HighNumbered:
    """A connection whose socket has a descriptor past select()'s 1023, as in
    a server holding thousands of WebSockets."""

    closed = False

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def test_a_connection_with_a_high_descriptor_is_checked_without_a_round_trip(pg_connection, monkeypatch):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 2048:
        pytest.skip(f"needs more than 2048 file descriptors (the hard limit is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    high = os.dup2(pg_connection.fileno(), 2000)
    try:
        monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(full_check_forbidden))
        db_pool.check_connection(HighNumbered(high))  # does not raise
    finally:
        os.close(high)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.django_db
def test_a_connection_whose_backend_was_terminated_fails_the_check(pg_connection):
    backend = pg_connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    # The server's notice and the end of the stream reach the idle socket.
    readable, _, _ = select.select([pg_connection.fileno()], [], [], 10)
    assert readable
    with pytest.raises(psycopg.OperationalError):
        db_pool.check_connection(pg_connection)


def test_a_closed_connection_fails_the_check(pg_connection):
    pg_connection.close()
    with pytest.raises(psycopg.OperationalError):
        db_pool.check_connection(pg_connection)


# The server's own pool (core.postgresql's DatabaseWrapper).


@pytest.mark.django_db(transaction=True)
def test_the_servers_pool_hands_out_an_idle_connection_without_a_round_trip(monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()  # back to the pool
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(full_check_forbidden))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_the_servers_pool_does_not_hand_out_a_connection_whose_backend_died(pg_connection):
    """What a PostgreSQL restart leaves in the pool: idle connections to
    backends that are gone. The next checkout gets a working one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pooled,) = cursor.fetchone()
    connection.close()  # back to the pool, idle
    pg_connection.execute("SELECT pg_terminate_backend(%s)", [pooled])
    while pg_connection.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pooled]).fetchone():
        select.select([], [], [], 0.01)  # the backend is on its way out
    for _ in range(connection.pool.get_stats().get("pool_available", 1) + 1):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pooled
        connection.close()
