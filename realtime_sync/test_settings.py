"""Settings for the test suite: production settings with a test key and plain HTTP.

DATABASE_URL and REDIS_URL are read as in production, so the same suite runs on
SQLite and the in-memory layer (a fresh machine) or on PostgreSQL and Redis (CI).
"""

import faulthandler
import os
import signal

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-with-enough-length-and-entropy-0123456789")

from .settings import *  # noqa: E402,F403

# A test server that stops answering is sent SIGUSR1 before it is killed: every
# thread's stack goes to its log, which the harness prints when a test failed.
if hasattr(signal, "SIGUSR1"):
    faulthandler.register(signal.SIGUSR1, all_threads=True)

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
# Tests serve static files from the apps' folders (finders); nothing is collected.
STATIC_ROOT = None

# On SQLite (no DATABASE_URL), the test database is a file rather than pytest-django's
# in-memory default, so the server process of a gateway test can open it (the harness
# passes its path as DATABASE_URL); the process id in its name keeps two test runs in
# one checkout apart. The test process and the server write to it at once: each waits
# up to `timeout` seconds for the other's lock, and every transaction takes the write
# lock when it begins (IMMEDIATE), so two that read and then write cannot deadlock
# ("database is locked"). The harness passes the same options in DATABASE_URL.
SQLITE_TEST_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["OPTIONS"] = {**SQLITE_TEST_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}  # noqa: F405
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", BASE_DIR / f".test-db-{os.getpid()}.sqlite3")  # noqa: F405
