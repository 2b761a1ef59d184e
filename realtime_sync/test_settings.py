"""Settings for the test suite: production settings with a test key and plain HTTP.

DATABASE_URL and REDIS_URL are read as in production, so the same suite runs on
SQLite and the in-memory layer (a fresh machine) or on PostgreSQL and Redis (CI).
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-with-enough-length-and-entropy-0123456789")

from .settings import *  # noqa: E402,F403

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
# Tests serve static files from the apps' folders (finders); nothing is collected.
STATIC_ROOT = None
