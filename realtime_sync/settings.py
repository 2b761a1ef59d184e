"""Settings for the realtime_sync service, read from the environment.

Every value that differs between a laptop and production comes from an environment
variable, so the same code runs everywhere (twelve-factor). With nothing set, the
service runs on embedded defaults: a SQLite file and the in-memory channel layer,
so a fresh machine needs neither PostgreSQL nor Redis.

Environment:
    DEBUG            "1"/"true" for development. Default: off.
    SECRET_KEY       required unless DEBUG is on.
    ALLOWED_HOSTS    comma separated. Default with DEBUG: localhost, 127.0.0.1, [::1].
    DATABASE_URL     e.g. postgres://user@127.0.0.1:5432/realtime. Default: SQLite file db.sqlite3.
    DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE   psycopg pool bounds for PostgreSQL (2, 20).
    REDIS_URL        e.g. redis://127.0.0.1:6379/0. Default: in-memory channel layer
                     (one process only).
    SECURE_SSL_REDIRECT, SECURE_HSTS_SECONDS   production HTTPS settings (on, one year).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "devices",
    "conversations",
    "presence",
    "delivery",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "realtime_sync.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "realtime_sync.wsgi.application"
ASGI_APPLICATION = "realtime_sync.asgi.application"


def database_from_env() -> dict:
    """The default database: DATABASE_URL, or a SQLite file when it is unset.

    PostgreSQL goes through psycopg 3 with its connection pool (Django >= 5.1);
    the pool replaces persistent connections, so CONN_MAX_AGE stays 0.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] == "django.db.backends.postgresql":
        # With the pool, Django's health checks make it check each connection on
        # checkout, so none that died with a PostgreSQL restart is handed out.
        config["CONN_HEALTH_CHECKS"] = True
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
            "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "20")),
            "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
        }
    return config


DATABASES = {"default": database_from_env()}

REDIS_URL = os.environ.get("REDIS_URL", "")
REDIS_SENTINELS = env_list("REDIS_SENTINELS", [])


def redis_host_from_env() -> dict | None:
    """channels-redis's connection settings: REDIS_URL, or Sentinel for failover.

    With REDIS_SENTINELS ("host:port,host:port"), the layer asks the sentinels for
    the current master of REDIS_SENTINEL_MASTER and follows it when it fails over.
    """
    # redis-py 8 reads with a 5 s socket timeout by default, which cuts off
    # channels-redis's 5 s blocking pops (channels_redis#422): allow longer.
    timeouts = {"socket_timeout": 15}
    if REDIS_SENTINELS:
        return {
            "sentinels": [(host, int(port)) for host, _, port in (s.rpartition(":") for s in REDIS_SENTINELS)],
            "master_name": os.environ.get("REDIS_SENTINEL_MASTER", "mymaster"),
            "sentinel_kwargs": {"socket_timeout": 5},
            "db": int(os.environ.get("REDIS_DB", "0")),
            **timeouts,
        }
    if REDIS_URL:
        return {"address": REDIS_URL, **timeouts}
    return None


REDIS_HOST = redis_host_from_env()
if REDIS_HOST:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_HOST],
                # One channel per server process carries all its events: room for bursts.
                "capacity": int(os.environ.get("CHANNEL_LAYER_CAPACITY", "10000")),
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve straight from the apps' static folders when collectstatic has not run.
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "devices.authentication.DeviceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    # Scoped limits only: views opt in with `throttle_scope`. Counted in the default cache.
    "DEFAULT_THROTTLE_RATES": {"login": "20/min"},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "realtime_sync API",
    "DESCRIPTION": (
        "Conversations, members, messages, receipts and devices. Every write here "
        "produces the same change-log entry and live event as over the WebSocket."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Limits of the messaging model (documented in docs/protocol.md and the README).
MESSAGE_BODY_MAX_CHARS = 4000
CLIENT_MSG_ID_MAX_CHARS = 64
CONVERSATION_TITLE_MAX_CHARS = 200
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# The WebSocket gateway (documented in docs/protocol.md; the hello frame announces them).
WS_HEARTBEAT_INTERVAL = float(os.environ.get("WS_HEARTBEAT_INTERVAL", "25"))
WS_HEARTBEAT_TIMEOUT = float(os.environ.get("WS_HEARTBEAT_TIMEOUT", "60"))
WS_MAX_FRAME_BYTES = int(os.environ.get("WS_MAX_FRAME_BYTES", "65536"))
WS_SHUTDOWN_GRACE_SECONDS = float(os.environ.get("WS_SHUTDOWN_GRACE_SECONDS", "10"))
# Past this many missed changes a conversation is answered with "reset" (reload it over REST).
SYNC_MAX_CHANGES = int(os.environ.get("SYNC_MAX_CHANGES", "500"))
# How long a stream waits for a missing seq to arrive live before reading it from the log.
WS_GAP_GRACE_SECONDS = float(os.environ.get("WS_GAP_GRACE_SECONDS", "0.1"))
# How often each server checks its streams against the log, to catch a dropped live event.
WS_RECONCILE_SECONDS = float(os.environ.get("WS_RECONCILE_SECONDS", "5"))
# Conversation events held for a connection that has not sent its first sync yet.
WS_MAX_HELD_EVENTS = 1000

# Presence, typing and receipts (documented in docs/protocol.md).
# A device whose server stops refreshing it (the process died) is offline after PRESENCE_TIMEOUT.
PRESENCE_TIMEOUT = float(os.environ.get("PRESENCE_TIMEOUT", "45"))
PRESENCE_REFRESH_SECONDS = float(os.environ.get("PRESENCE_REFRESH_SECONDS", "15"))
# At most one presence broadcast per user, and one receipts broadcast per conversation, per window.
PRESENCE_COALESCE_SECONDS = float(os.environ.get("PRESENCE_COALESCE_SECONDS", "1.0"))
RECEIPT_COALESCE_SECONDS = float(os.environ.get("RECEIPT_COALESCE_SECONDS", "0.5"))
TYPING_TIMEOUT = float(os.environ.get("TYPING_TIMEOUT", "6"))
