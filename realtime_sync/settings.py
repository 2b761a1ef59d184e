"""Settings for the realtime_sync service, read from the environment.

Every value that differs between a laptop and production comes from an environment
variable, so the same code runs everywhere (twelve-factor). With nothing set, the
service runs on embedded defaults: a SQLite file, the in-memory channel layer and a
local-memory cache, so a fresh machine needs neither PostgreSQL nor Redis.

Each variable is read once, below, through `env` (django-environ) with its type and
default. The variables, their defaults and meanings are listed in the README's
"Configuration" table; tests/test_config_readme.py keeps that table and this module
in step.
"""

from pathlib import Path

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ's typed reads, with this service's reading of a value:

    * a value is taken as it is: "$NAME" is not a reference to another variable
      (a generated SECRET_KEY may well start with "$");
    * a switch is on for 1, true, yes or on (any case, spaces around) and off for
      anything else; a list is comma separated, each item stripped, blanks dropped;
      for both, an empty value means unset, so the default applies;
    * any other empty value is the empty string: REDIS_URL="" means no Redis;
    * numbers are Python's int() and float() of the value.

    Each read below names its type and default; there is no schema or prefix.
    """

    BOOLEAN_TRUE_STRINGS = ("1", "true", "yes", "on")

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        value = self.ENVIRON.get(var)
        if value is None or (value == "" and cast in (bool, list)):
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable")
            return self.parse_value(default, cast) if parse_default else default
        return self.parse_value(value, cast)

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool:
            return value.strip().lower() in cls.BOOLEAN_TRUE_STRINGS
        if cast is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        if cast is float:
            return float(value)
        return super().parse_value(value, cast)


env = Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "daphne",
    # Before the admin: its template adds the status page to the admin's index.
    "observability",
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
    "drf_spectacular_sidecar",
    "devices",
    "conversations",
    "presence",
    "delivery",
    "gateway",
    "web",
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
    url = env.str("DATABASE_URL", default="")
    config = dj_database_url.parse(url, conn_max_age=0) if url else {"NAME": BASE_DIR / "db.sqlite3"}
    config.setdefault("ENGINE", "django.db.backends.sqlite3")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The server writes from several threads at once (handshakes, presence):
        # each transaction takes SQLite's write lock when it begins, so two that
        # read and then write cannot deadlock ("database is locked" at once), and
        # a writer waits up to 20 s for the lock instead of failing.
        options = config.setdefault("OPTIONS", {})
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, with a cheaper check of each pooled connection on
        # checkout (so none that died with a PostgreSQL restart is handed out):
        # core.db_pool's, which makes no round trip for a connection with
        # nothing to read, where CONN_HEALTH_CHECKS makes one every time.
        config["ENGINE"] = "core.postgresql"
        config["CONN_HEALTH_CHECKS"] = False
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
    return config


DATABASES = {"default": database_from_env()}
# Threads (each holding a pooled connection while it works) for the writes a
# device waits on: send, edit, delete, read and delivered receipts. The rest of
# the gateway's database work shares the event loop's default thread pool.
DB_WRITE_THREADS = env.int("DB_WRITE_THREADS", default=4)
# Connections of the event loop itself, per process, for the send's one
# statement on PostgreSQL (core/loop_db.py); 0: sends use the write threads.
DB_LOOP_CONNECTIONS = env.int("DB_LOOP_CONNECTIONS", default=4)

# The cyclic garbage collector of a server process (core/gc_tuning.py): what
# start-up made is frozen out of every collection, and the youngest
# generation is collected every GC_GEN0_THRESHOLD allocations (0: CPython's 700).
GC_FREEZE_AT_START = env.bool("GC_FREEZE_AT_START", default=True)
GC_GEN0_THRESHOLD = env.int("GC_GEN0_THRESHOLD", default=0)

REDIS_URL = env.str("REDIS_URL", default="")
REDIS_SENTINELS = env.list("REDIS_SENTINELS", default=[])


def redis_host_from_env() -> dict | None:
    """channels-redis's connection settings: REDIS_URL, or Sentinel for failover.

    With REDIS_SENTINELS ("host:port,host:port"), the layer asks the sentinels for
    the current master of REDIS_SENTINEL_MASTER and follows it when it fails over.
    """
    # redis-py 8 reads with a 5 s socket timeout by default, which cuts off
    # channels-redis's 5 s blocking pops (channels_redis#422): allow longer. A
    # Redis that does not answer a connect at all (a host gone) fails in 2 s.
    timeouts = {"socket_timeout": 15, "socket_connect_timeout": 2}
    if REDIS_SENTINELS:
        return {
            "sentinels": [(host, int(port)) for host, _, port in (s.rpartition(":") for s in REDIS_SENTINELS)],
            "master_name": env.str("REDIS_SENTINEL_MASTER", default="mymaster"),
            "sentinel_kwargs": {"socket_timeout": 5},
            "db": env.int("REDIS_DB", default=0),
            **timeouts,
        }
    if REDIS_URL:
        return {"address": REDIS_URL, **timeouts}
    return None


REDIS_HOST = redis_host_from_env()
if REDIS_HOST:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis with a bounded pool that waits when full (core/channel_layer.py).
            "BACKEND": "core.channel_layer.BoundedRedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_HOST],
                # One channel per server process carries all its events: room for bursts.
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=10000),
                "expiry": 60,
                # Redis connections per process, and how long a caller waits for one.
                "pool_max_connections": env.int("REDIS_POOL_MAX_CONNECTIONS", default=50),
                "pool_timeout": env.float("REDIS_POOL_TIMEOUT", default=5.0),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The default cache holds the login throttle's counts. With REDIS_URL it is that Redis,
# shared by every process and kept across restarts; otherwise each process's memory.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Keys "cache:<version>:<key>", apart from channels-redis's "asgi..." keys.
            # cache.clear() empties the whole Redis database, the channel layer's
            # keys included: delete keys by name instead.
            "KEY_PREFIX": "cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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

# The chat page's log-in (web.views); the admin keeps its own.
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:chat"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "devices.authentication.DeviceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    # Scoped limits only: views opt in with `throttle_scope`. Counted in the default cache.
    # The login rates are read from the environment at the end of this module.
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
    # Swagger UI from this project's static files, pinned in requirements.txt: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# Limits of the messaging model (documented in docs/protocol.md and the README).
MESSAGE_BODY_MAX_CHARS = 4000
CLIENT_MSG_ID_MAX_CHARS = 64
CONVERSATION_TITLE_MAX_CHARS = 200
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200

# Whom GET /api/v1/users finds (the chat page's "new conversation"): "all" active
# users, or only those who "shared" a conversation with the caller already.
USER_SEARCH_SCOPE = env.str("USER_SEARCH_SCOPE", default="all")
if USER_SEARCH_SCOPE not in ("all", "shared"):
    raise ImproperlyConfigured(f"USER_SEARCH_SCOPE must be all or shared, not {USER_SEARCH_SCOPE!r}.")
USER_SEARCH_PAGE_SIZE = 20

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Logs (docs/operations.md): plain text for development, one JSON object per line
# with LOG_FORMAT=json. Everything goes to the root logger's one handler; the
# `django` logger's own console handler (on with DEBUG) is removed, or its lines
# would print twice.
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "observability.logs.TextFormatter"},
        "json": {"()": "observability.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django": {"handlers": [], "propagate": True}},
}

# Metrics and health (docs/operations.md). Each process keeps its own Prometheus
# registry; a web process serves it at /metrics only to `Authorization: Bearer
# METRICS_TOKEN` (404 while unset), the listener on LISTENER_METRICS_BIND.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
LISTENER_METRICS_BIND = env.str("LISTENER_METRICS_BIND", default="127.0.0.1:9101")
# /readyz gives each of its checks (database, Redis) at most this long.
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=2.0)
# The admin's status page: every process reports its figures every STATUS_REPORT_SECONDS
# (0: never) into the database; the page shows rates and latencies over the last
# STATUS_WINDOW_SECONDS and flags a delivery p99 above STATUS_DELIVERY_P99_TARGET.
STATUS_REPORT_SECONDS = env.float("STATUS_REPORT_SECONDS", default=10.0)
STATUS_WINDOW_SECONDS = env.float("STATUS_WINDOW_SECONDS", default=300.0)
STATUS_DELIVERY_P99_TARGET = env.float("STATUS_DELIVERY_P99_TARGET", default=0.25)

# The WebSocket gateway (documented in docs/protocol.md; the hello frame announces them).
WS_HEARTBEAT_INTERVAL = env.float("WS_HEARTBEAT_INTERVAL", default=25.0)
WS_HEARTBEAT_TIMEOUT = env.float("WS_HEARTBEAT_TIMEOUT", default=60.0)
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=65536)
# Accept a client's permessage-deflate offer (parameters in gateway/compression.py).
WS_COMPRESSION = env.bool("WS_COMPRESSION", default=True)
WS_SHUTDOWN_GRACE_SECONDS = env.float("WS_SHUTDOWN_GRACE_SECONDS", default=10.0)
# On SIGTERM, how long a process stays up answering /readyz with 503 (and new
# connections with 4503) before it closes its connections, so a load balancer
# has stopped sending it clients by the time they reconnect.
WS_DRAIN_UNREADY_SECONDS = env.float("WS_DRAIN_UNREADY_SECONDS", default=0.0)
# Past this many missed changes a conversation is answered with "reset" (reload it over REST).
SYNC_MAX_CHANGES = env.int("SYNC_MAX_CHANGES", default=500)
# How long a stream waits for a missing seq to arrive live before reading it from the log.
WS_GAP_GRACE_SECONDS = env.float("WS_GAP_GRACE_SECONDS", default=0.1)
# How often each server checks its streams against the log, to catch a dropped live event.
WS_RECONCILE_SECONDS = env.float("WS_RECONCILE_SECONDS", default=5.0)
# Conversation events held for a connection that has not sent its first sync yet.
WS_MAX_HELD_EVENTS = 1000

# Presence, typing and receipts (documented in docs/protocol.md).
# A device whose server stops refreshing it (the process died) is offline after PRESENCE_TIMEOUT.
PRESENCE_TIMEOUT = env.float("PRESENCE_TIMEOUT", default=45.0)
PRESENCE_REFRESH_SECONDS = env.float("PRESENCE_REFRESH_SECONDS", default=15.0)
# At most one presence broadcast per user, and one receipts broadcast per conversation, per window.
PRESENCE_COALESCE_SECONDS = env.float("PRESENCE_COALESCE_SECONDS", default=1.0)
RECEIPT_COALESCE_SECONDS = env.float("RECEIPT_COALESCE_SECONDS", default=0.5)
TYPING_TIMEOUT = env.float("TYPING_TIMEOUT", default=6.0)

# Storms (documented in docs/protocol.md).
# Handshakes and syncs a process sets up at once; up to WS_MAX_CONNECT_QUEUE more
# handshakes wait their turn (at most WS_CONNECT_QUEUE_TIMEOUT); past that a new
# connection gets an `overloaded` error with a retry hint and 4503.
WS_MAX_CONNECTING = env.int("WS_MAX_CONNECTING", default=100)
WS_MAX_CONNECT_QUEUE = env.int("WS_MAX_CONNECT_QUEUE", default=2000)
WS_CONNECT_QUEUE_TIMEOUT = env.float("WS_CONNECT_QUEUE_TIMEOUT", default=20.0)
WS_OVERLOAD_RETRY_SECONDS = env.float("WS_OVERLOAD_RETRY_SECONDS", default=1.0)
# Presence goes live through conversations of at most this many members; beyond
# that, only to the connections that subscribed to the user (presence.subscribe).
PRESENCE_LIVE_MAX_MEMBERS = env.int("PRESENCE_LIVE_MAX_MEMBERS", default=50)
PRESENCE_SUBSCRIBE_MAX = env.int("PRESENCE_SUBSCRIBE_MAX", default=500)

# Limits on what one connection or user may ask of a process (docs/protocol.md §16).
# Requests per second (token buckets): per connection and per user, with bursts.
WS_RATE_PER_CONNECTION = env.float("WS_RATE_PER_CONNECTION", default=30.0)
WS_RATE_BURST_PER_CONNECTION = env.int("WS_RATE_BURST_PER_CONNECTION", default=60)
WS_RATE_PER_USER = env.float("WS_RATE_PER_USER", default=60.0)
WS_RATE_BURST_PER_USER = env.int("WS_RATE_BURST_PER_USER", default=120)
# Requests refused for rate a connection may collect (refilled one a second) before it is closed (4430).
WS_RATE_STRIKES = env.int("WS_RATE_STRIKES", default=50)
# Requests of one connection queued while an earlier one runs; more are refused at once.
WS_MAX_PENDING_REQUESTS = env.int("WS_MAX_PENDING_REQUESTS", default=8)
# Output a client has not read yet: past half, typing/presence/receipts are dropped;
# past all of it, the connection is closed with 4429 (reconnect and sync).
WS_MAX_OUTBOUND_BYTES = env.int("WS_MAX_OUTBOUND_BYTES", default=1048576)
# Connections one user may hold to one process (4431 past it).
WS_MAX_CONNECTIONS_PER_USER = env.int("WS_MAX_CONNECTIONS_PER_USER", default=20)

# Conversations others may add one user to per hour (429 rate_limited past it);
# moderators in the admin are not limited.
MEMBER_ADDS_PER_HOUR = env.int("MEMBER_ADDS_PER_HOUR", default=60)

# Client addresses and the login limits (README "Configuration" and its proxy paragraph;
# docs/protocol.md §16). X-Forwarded-For is read only through this many proxies in
# front of the server, each appending the address it was connected from: the N-th
# entry from the right is the client's. 0 (the default): the TCP peer, the header ignored.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more.")
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT


def checked_rate(var: str, rate: str) -> str:
    """A DRF rate, "<count>/<s|min|hour|day>", checked here rather than on the first login."""
    count, _, period = rate.replace(" ", "").partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1] in ("s", "m", "h", "d")):
        raise ImproperlyConfigured(f"{var} must look like 20/min (a count per s, min, hour or day), not {rate!r}.")
    return f"{int(count)}/{period}"


# Login attempts per client address, and per username from all addresses together.
# One address alone stays below the per-username rate, so locking a user out takes
# several addresses, each held to the per-address rate (devices/throttles.py).
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    **REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
    "login": checked_rate("LOGIN_RATE_PER_ADDRESS", env.str("LOGIN_RATE_PER_ADDRESS", default="20/min")),
    "login_username": checked_rate("LOGIN_RATE_PER_USERNAME", env.str("LOGIN_RATE_PER_USERNAME", default="30/min")),
}

# Request bodies are JSON only: form encodings cannot say null, numbers or lists the
# way the OpenAPI schema does, so other content types answer 415 unsupported_media_type.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["rest_framework.parsers.JSONParser"]

# The OpenAPI generator: drf-spectacular's, stating the text rules requests are held to.
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "core.openapi.AutoSchema"
