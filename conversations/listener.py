"""Publishing the changes that plain SQL writes into the log.

Messages inserted, edited or deleted outside the app (psql, another service, a
data migration) are logged by PostgreSQL triggers (conversations migration
0002): each such change takes the conversation's next seq, is stored with
origin 'sql', and rings NOTIFY realtime_changes {"conversation_id", "seq"} on
commit. This listener, run as its own process (`python manage.py
listen_changes`, the Procfile's `listener`), turns each notification into the
live event the app would have sent, through the same publisher. Devices cannot
tell the two apart. Run one listener per database; a second one is harmless
(devices drop a seq they already have) but doubles the traffic.

LISTEN needs a dedicated connection in autocommit mode, not one from Django's
pool. When PostgreSQL goes away (a restart, a failover) the listener
reconnects with backoff and then catches up: notifications sent while it was
disconnected are lost, so it reads the log for the plain-SQL changes it has not
published (ids above the highest it published, and, for transactions that
took a lower id but committed late, everything created within the catch-up
window before the connection was lost, skipping those it remembers
publishing) and publishes them. It listens before it reads, so a change
committing meanwhile is either read or notified. On its first start it also
publishes the plain-SQL changes of the last window (a restart or a deploy of
the listener itself). A change published twice costs nothing: devices drop
seqs they already have. Lost doorbells cost only latency anyway, since devices
fill gaps from the log.
"""

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from django.conf import settings
from psycopg.conninfo import make_conninfo

from core.publish import send_now
from observability import metrics

from .changelog import change_event, groups_of
from .models import Change

logger = logging.getLogger(__name__)

CHANNEL = "realtime_changes"
CATCH_UP_BATCH = 500
RECENT_MAX = 100_000  # published change ids remembered to skip them in a catch-up
# Options in DATABASES["OPTIONS"] that are Django's, not libpq connection parameters.
DJANGO_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role", "cursor_factory", "context"}

COLUMNS = "id, conversation_id, seq, kind, payload, created_at"


def conninfo_from_settings(database: dict | None = None) -> str:
    """A libpq connection string for the dedicated connection, from DATABASES."""
    db = database or settings.DATABASES["default"]
    params = {
        "dbname": db.get("NAME"),
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": str(db["PORT"]) if db.get("PORT") else None,
    }
    params.update({k: v for k, v in db.get("OPTIONS", {}).items() if k not in DJANGO_OPTIONS})
    params.setdefault("connect_timeout", 5)
    params.setdefault("application_name", "realtime_sync listener")
    # Notice a peer that vanished without closing the socket (no FIN, e.g. a failover).
    params.setdefault("keepalives", 1)
    params.setdefault("keepalives_idle", 10)
    params.setdefault("keepalives_interval", 5)
    params.setdefault("keepalives_count", 3)
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def publish_change(change: Change) -> None:
    """Send a logged change to the groups the app sends it to; its log row's
    created_at stands for its commit time (a little earlier: when its transaction began)."""
    send_now(change_event(change).at_commit(change.created_at.timestamp()), groups_of(change))
    metrics.LISTENER_LAG.observe(metrics.since(change.created_at.timestamp()))


class ChangeListener:
    """Follows NOTIFY realtime_changes and publishes the changes it names.

    `run()` blocks until `stop` is set; it survives PostgreSQL restarts.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        stop: threading.Event | None = None,
        publish=publish_change,
        catch_up_window: float = 300.0,
        poll_interval: float = 0.5,
        keepalive_interval: float = 10.0,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ):
        self.conninfo = conninfo
        self.stop = stop or threading.Event()
        self.publish = publish
        self.catch_up_window = timedelta(seconds=catch_up_window)
        self.poll_interval = poll_interval
        self.keepalive_interval = keepalive_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        # The highest change id published among plain-SQL changes (None: none yet).
        self.high_water_mark: int | None = None
        # Until when the listener is known to have heard every notification.
        self.heard_until = datetime.now(UTC)
        # Changes published lately (id -> created_at), so a catch-up skips them.
        self._recent: dict[int, datetime] = {}
        self.published = 0
        self.listening = threading.Event()  # set while connected and caught up

    def run(self) -> None:
        delay = self.retry_initial
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    caught_up = self.catch_up(conn)
                    metrics.LISTENER_CAUGHT_UP.inc(caught_up)
                    logger.info("listening on %s (caught up on %d changes)", CHANNEL, caught_up)
                    self.listening.set()
                    metrics.LISTENER_CONNECTED.set(1)
                    delay = self.retry_initial
                    self.follow(conn)
            except psycopg.Error as error:
                self.listening.clear()
                metrics.LISTENER_CONNECTED.set(0)
                metrics.LISTENER_RECONNECTS.inc()
                if self.stop.is_set():
                    break
                reason = " ".join(str(error).split())
                logger.warning("database connection lost or refused (%s); retrying in %.1f s", reason, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.retry_max)
        logger.info("listener stopped after publishing %d changes", self.published)

    def follow(self, conn: psycopg.Connection) -> None:
        """Publish notified changes until stopped (or until the connection fails)."""
        last_query = last_tidy = time.monotonic()
        while not self.stop.is_set():
            # Notifications that arrive while a query runs are queued by psycopg
            # and returned by the next notifies() call.
            notifies = list(conn.notifies(timeout=self.poll_interval, stop_after=1))
            if notifies:
                metrics.LISTENER_NOTIFICATIONS.inc(len(notifies))
                self.publish_notified(conn, notifies)
                last_query = time.monotonic()
            elif time.monotonic() - last_query > self.keepalive_interval:
                conn.execute("SELECT 1")  # an idle connection's failure shows here
                last_query = time.monotonic()
            self.heard_until = datetime.now(UTC)
            if time.monotonic() - last_tidy > self.keepalive_interval:
                self._forget_before(self.heard_until - self.catch_up_window)
                last_tidy = time.monotonic()

    def publish_notified(self, conn: psycopg.Connection, notifies) -> None:
        keys = []
        for notify in notifies:
            try:
                data = json.loads(notify.payload)
                keys.append((int(data["conversation_id"]), int(data["seq"])))
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring malformed notification on %s: %r", CHANNEL, notify.payload)
        if not keys:
            return
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM conversations_change"
            " WHERE origin = 'sql' AND (conversation_id, seq) IN"
            " (SELECT * FROM unnest(%s::bigint[], %s::bigint[])) ORDER BY id",
            ([c for c, _ in keys], [s for _, s in keys]),
        ).fetchall()
        self._publish_rows(rows)

    def catch_up(self, conn: psycopg.Connection) -> int:
        """Publish the plain-SQL changes committed while nobody was listening.

        Those are the changes above the high-water mark, and (for a transaction
        that took a lower id but committed during the outage; on the first
        start, for everything) those created within the catch-up window before
        the listener last heard the database, less the ones already published.
        """
        since = self.heard_until - self.catch_up_window
        self._forget_before(since)
        [oldest_in_window] = conn.execute(
            "SELECT min(id) FROM conversations_change WHERE origin = 'sql' AND created_at >= %s", (since,)
        ).fetchone()
        bounds = [] if self.high_water_mark is None else [self.high_water_mark]
        if oldest_in_window is not None:
            bounds.append(oldest_in_window - 1)
        if not bounds:
            return 0
        # Every plain-SQL change above the lower bound (a superset: ids are not in
        # commit order); the ones already published are skipped.
        after_id, published = min(bounds), 0
        while True:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM conversations_change WHERE origin = 'sql' AND id > %s ORDER BY id LIMIT %s",
                (after_id, CATCH_UP_BATCH),
            ).fetchall()
            published += self._publish_rows(rows)
            if len(rows) < CATCH_UP_BATCH:
                return published
            after_id = rows[-1][0]

    def _publish_rows(self, rows) -> int:
        """Publish the rows not published yet, in id order; how many that was.

        Within one conversation id order is seq order: both are taken under the
        conversation's row lock.
        """
        published = 0
        for change_id, conversation_id, seq, kind, payload, created_at in rows:
            if change_id in self._recent:
                continue
            self.publish(
                Change(
                    id=change_id,
                    conversation_id=conversation_id,
                    seq=seq,
                    kind=kind,
                    payload=payload,
                    created_at=created_at,
                )
            )
            metrics.LISTENER_PUBLISHED.inc()
            self._remember(change_id, created_at)
            published += 1
            if self.high_water_mark is None or change_id > self.high_water_mark:
                self.high_water_mark = change_id
        self.published += published
        return published

    def _remember(self, change_id: int, created_at: datetime) -> None:
        self._recent[change_id] = created_at
        if len(self._recent) > RECENT_MAX:  # forgetting costs at most a duplicate publish
            del self._recent[next(iter(self._recent))]

    def _forget_before(self, since: datetime) -> None:
        """Forget the oldest published changes (roughly: by publication order)."""
        while self._recent:
            oldest = next(iter(self._recent))
            if self._recent[oldest] >= since:
                return
            del self._recent[oldest]
