"""`python manage.py listen_changes`: publish messages written with plain SQL.

Runs the listener of `conversations.listener` until SIGTERM or SIGINT, then
exits with status 0. In production it is the Procfile's `listener` process;
one per database is enough. Its metrics are served on LISTENER_METRICS_BIND
(or --metrics-bind; empty: none), and it reports to the admin's status page.
"""

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from conversations.listener import ChangeListener, conninfo_from_settings
from observability import exporter, reporter

logger = logging.getLogger("conversations.listener")


class Command(BaseCommand):
    help = (
        "Publish live events for messages inserted, edited or deleted with plain SQL "
        "(LISTEN realtime_changes); reconnects and catches up after PostgreSQL restarts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--catch-up-seconds",
            type=float,
            default=300.0,
            help="On start and after a reconnect, also publish plain-SQL changes created this long "
            "before the listener last heard the database (default 300; re-publishing is harmless).",
        )
        parser.add_argument(
            "--metrics-bind",
            default=None,
            help="HOST:PORT to serve Prometheus metrics on (default: LISTENER_METRICS_BIND, "
            "127.0.0.1:9101); an empty value serves none.",
        )

    def handle(self, *args, catch_up_seconds, metrics_bind, **options):
        if connection.vendor != "postgresql":
            raise CommandError("listen_changes needs PostgreSQL: set DATABASE_URL=postgres://...")
        if settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
            raise CommandError("listen_changes publishes to other processes: set REDIS_URL (or REDIS_SENTINELS).")
        bind = settings.LISTENER_METRICS_BIND if metrics_bind is None else metrics_bind
        try:
            exporter.serve(bind)
        except ValueError as error:
            raise CommandError(str(error)) from error
        reporter.start("listener")
        stop = threading.Event()

        def request_stop(signum, frame):
            logger.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        ChangeListener(conninfo_from_settings(), stop=stop, catch_up_window=catch_up_seconds).run()
