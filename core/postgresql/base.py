"""Django's PostgreSQL backend, whose connection pool checks connections on
checkout with core/db_pool.py's check instead of a round trip each.

Django builds the pool itself and passes psycopg_pool a `check` of its own
choosing (its round trip with CONN_HEALTH_CHECKS, else none), so a `check` in
OPTIONS["pool"] would be passed twice; the pool keeps its check in `_check`,
and this sets it there once the pool exists. tests/services/test_db_pool.py
proves the server's pool uses it.
"""

from django.db.backends.postgresql import base

from core.db_pool import check_connection


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        if pool is not None and getattr(pool, "_check", None) is not check_connection:
            pool._check = check_connection
        return pool
