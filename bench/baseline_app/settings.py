"""Settings of the tutorial chat: no database, no sessions, no auth; channels-redis.

Environment (set by bench/baseline_channels_chat.py):
    REDIS_URL                 redis://127.0.0.1:6379/<db>
    CHANNEL_LAYER_CAPACITY    per-channel capacity; default 100 (channels-redis's own default)
"""

import os

DEBUG = False
SECRET_KEY = "bench-baseline-chat-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["daphne", "channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.baseline_app.urls"
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "bench.baseline_app.asgi.application"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # As in the product's settings: redis-py 8 reads with a 5 s socket timeout by
            # default, which cuts off channels-redis's 5 s blocking pops (channels_redis#422).
            "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 15}],
            "capacity": int(os.environ.get("CHANNEL_LAYER_CAPACITY", "100")),
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
