"""The service's Prometheus metrics: one registry per process, defined once, here.

Every process (each Daphne, the listener) keeps its own figures in memory and
serves them itself: a web process at `/metrics` on its own port (behind
METRICS_TOKEN), the listener on its own address (LISTENER_METRICS_BIND).
Prometheus scrapes each process, and its `instance` label tells them apart.
prometheus-client's multiprocess mode is not used: it is for servers that fork
workers behind one port (gunicorn), needs a shared directory cleaned on every
restart, and cannot serve live gauges such as the open connections; here every
process is started on a port of its own anyway.

Instrumentation is one call at the point of the event (`CONNECTS.inc()`,
`DELIVERY_LATENCY.observe(s)`), on objects whose labels are bound at import
where the label values are known, so the hot path does no label lookup. Label
values are always from a small fixed set (frame types, close codes, reasons),
never a user, device or conversation id.

With METRICS_ENABLED off every metric below is a stand-in that does nothing,
which is how the cost of measuring is measured (docs/operations.md).
"""

import asyncio
import bisect
import time

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

ENABLED = getattr(settings, "METRICS_ENABLED", True)

# The `_created` series double the exposition and say nothing an operator needs.
disable_created_metrics()


class _Off:
    """What every metric is when METRICS_ENABLED is off: each call does nothing."""

    def labels(self, *values, **labels):
        return self

    def inc(self, amount=1):
        pass

    def dec(self, amount=1):
        pass

    def set(self, value):
        pass

    def observe(self, value):
        pass

    def set_function(self, function):
        pass

    def collect(self):
        return []


OFF = _Off()


def counter(name, documentation, labels=()):
    return Counter(name, documentation, labels) if ENABLED else OFF


def gauge(name, documentation, labels=()):
    return Gauge(name, documentation, labels) if ENABLED else OFF


def histogram(name, documentation, labels=(), buckets=Histogram.DEFAULT_BUCKETS):
    return Histogram(name, documentation, labels, buckets=buckets) if ENABLED else OFF


# Seconds. Latency buckets around the product's promise (250 ms at p99).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Connections

CONNECTIONS_OPEN = gauge("realtime_connections_open", "WebSocket connections set up (hello sent) and not closed yet.")
CONNECTS = counter("realtime_connects_total", "WebSocket connections set up (authenticated, hello sent).")
DISCONNECTS = counter("realtime_disconnects_total", "WebSocket connections closed, by close code.", ["code"])
HANDSHAKE_REFUSALS = counter(
    "realtime_handshake_refusals_total", "WebSocket handshakes refused, by reason.", ["reason"]
)

# Frames

FRAMES_IN = counter("realtime_frames_in_total", "Request frames received, by frame type.", ["type"])
FRAMES_REFUSED = counter(
    "realtime_frames_refused_total", "Request frames refused on arrival, not run (rate limits, queue full)."
)
FRAMES_OUT = counter("realtime_frames_out_total", "Frames sent, by frame type and event kind.", ["type", "kind"])
BYTES_OUT = counter("realtime_bytes_out_total", "Bytes of frames sent (UTF-8).")
BYTES_OUT_WIRE = counter(
    "realtime_bytes_out_wire_total",
    "Bytes written to clients' sockets for those frames: WebSocket framing included, after permessage-deflate.",
)
FRAMES_DROPPED = counter(
    "realtime_frames_dropped_total", "State frames (typing, presence, receipts) dropped for a client not reading."
)

# Requests

REQUESTS = counter(
    "realtime_requests_total",
    "WebSocket requests answered, by type and outcome (ok or error code).",
    ["type", "outcome"],
)
REQUEST_DURATION = histogram(
    "realtime_request_duration_seconds",
    "Time from taking a request off the queue to its answer.",
    ["type"],
    buckets=REQUEST_BUCKETS,
)

# Delivery

DELIVERY_LATENCY = histogram(
    "realtime_delivery_latency_seconds",
    "Commit of a change to its frame handed to the transport, per device (live deliveries).",
    buckets=LATENCY_BUCKETS,
)
PUBLISH_DISPATCH_LATENCY = histogram(
    "realtime_publish_dispatch_latency_seconds",
    "Publish of an event to the channel layer to its dispatch by a process's hub.",
    buckets=LATENCY_BUCKETS,
)
EVENTS_PUBLISHED = counter("realtime_events_published_total", "Events published to the channel layer (per group).")
PUBLISH_ERRORS = counter("realtime_publish_errors_total", "Publishes the channel layer refused (events not sent).")
EVENTS_DISPATCHED = counter("realtime_events_dispatched_total", "Layer messages the hub received and dispatched.")
OUT_OF_ORDER = counter(
    "realtime_stream_out_of_order_total", "Live events that reached a stream ahead of a missing seq (held)."
)
DUPLICATES = counter("realtime_stream_duplicates_total", "Live events a stream dropped: the device had them already.")
REFILLS = counter(
    "realtime_stream_refills_total",
    "Stream refills from the change log, by reason (gap, reconcile, recovery).",
    ["reason"],
)
LOG_READS = counter(
    "realtime_stream_log_reads_total",
    "Reads of the change log by streams (refills and catch-up), shared reads counted once.",
)
LOG_CHANGES_SENT = counter(
    "realtime_stream_log_changes_total",
    "Changes sent from the change log rather than live, by reason (catch_up after sync, refill).",
    ["reason"],
)
RESETS = counter(
    "realtime_catchup_resets_total",
    "Conversations answered with reset (reload over REST), by reason.",
    ["reason"],
)

# The channel layer

LAYER_ERRORS = counter(
    "realtime_layer_errors_total", "Channel-layer failures seen by the hub, by operation.", ["operation"]
)
LAYER_RECOVERIES = counter("realtime_layer_recoveries_total", "Times the hub found the channel layer back.")
LAYER_UP = gauge("realtime_layer_up", "1 while the hub's channel layer answers, 0 during an outage.")
LAYER_LONE_PUBLISHES = counter(
    "realtime_layer_lone_publishes_total",
    "Publishes that skipped reading their groups' members: no other process receives (core/layer_receivers.py).",
)
DRAINING = gauge("realtime_draining", "1 once the process got SIGTERM and is closing its connections.")

# The event loop's own PostgreSQL connections, for sends (core/loop_db.py)

DB_LOOP_CONNECTIONS = gauge("realtime_db_loop_connections", "PostgreSQL connections the event loop holds for sends.")
DB_LOOP_IN_USE = gauge("realtime_db_loop_connections_in_use", "Connections of the event loop running a send now.")
DB_LOOP_WAITS = counter("realtime_db_loop_waits_total", "Sends that waited for a connection of the event loop.")
DB_LOOP_ERRORS = counter(
    "realtime_db_loop_errors_total", "Sends that got no connection of the event loop within DB_POOL_TIMEOUT."
)
DB_LOOP_LOST = counter(
    "realtime_db_loop_connections_lost_total", "Connections of the event loop found broken and closed."
)

# State broadcasts

BROADCASTS = counter(
    "realtime_broadcasts_total", "Coalesced state broadcasts sent, by kind (presence, receipts).", ["kind"]
)
BROADCASTS_COALESCED = counter(
    "realtime_broadcasts_coalesced_total",
    "State updates folded into a broadcast already pending, by kind (not sent on their own).",
    ["kind"],
)
TYPING_EVENTS = counter("realtime_typing_events_total", "Typing events broadcast, by state.", ["state"])

# The listener (listen_changes)

LISTENER_NOTIFICATIONS = counter("realtime_listener_notifications_total", "NOTIFY realtime_changes received.")
LISTENER_PUBLISHED = counter("realtime_listener_changes_published_total", "Plain-SQL changes published.")
LISTENER_CAUGHT_UP = counter(
    "realtime_listener_caught_up_total", "Plain-SQL changes published by a catch-up (after a (re)connect)."
)
LISTENER_RECONNECTS = counter(
    "realtime_listener_reconnects_total", "Times the listener lost or could not get its database connection."
)
LISTENER_CONNECTED = gauge("realtime_listener_connected", "1 while the listener is connected and caught up.")
LISTENER_LAG = histogram(
    "realtime_listener_lag_seconds",
    "A plain-SQL change's created_at to its publish by the listener (how far behind the log it runs).",
    buckets=LATENCY_BUCKETS,
)


# Pre-bound children for the fixed label sets of the hot path.

REQUEST_TYPES = (
    "ping",
    "sync",
    "fetch",
    "send",
    "edit",
    "delete",
    "read",
    "delivered",
    "presence",
    "presence.subscribe",
    "typing",
)
_frames_in = {name: FRAMES_IN.labels(name) for name in (*REQUEST_TYPES, "unknown", "invalid")}
_durations = {name: REQUEST_DURATION.labels(name) for name in (*REQUEST_TYPES, "unknown", "invalid")}
_requests: dict = {}
_frames_out: dict = {}
_disconnects: dict = {}


def frame_in(frame_type) -> None:
    """A request frame arrived; `frame_type` is its `type`, "invalid" when it did not decode."""
    _frames_in.get(frame_type, _frames_in["unknown"]).inc()


def request_done(frame_type, outcome: str, seconds: float) -> None:
    """A request was answered: `outcome` is "ok" or the error code."""
    if frame_type not in _durations:
        frame_type = "unknown" if frame_type != "invalid" else frame_type
    key = (frame_type, outcome)
    child = _requests.get(key)
    if child is None:
        child = _requests[key] = REQUESTS.labels(frame_type, outcome)  # error codes are a fixed set
    child.inc()
    _durations[frame_type].observe(seconds)


# Frames out are encoded by the server ({"type":"...","kind":"...",...} for
# events), so their labels are read from the text's start instead of decoding it.
_TYPE_PREFIX = '{"type":"'
_EVENT_PREFIX = '{"type":"event","kind":"'
_FRAME_LABELS_MAX = 200  # server-made labels are a small set; this only guards against a bug


def frame_out(text: str, wire_bytes: int = 0, committed_at: float | None = None) -> None:
    """A frame was handed to the transport (`wire_bytes`: what was written for
    it, when known); for a live change's frame, `committed_at` is its commit
    time, and DELIVERY_LATENCY observes the time from it.

    On an event loop the frame is tallied in plain numbers (`_LoopTally`):
    a hub's dispatch of one event to a thousand connections costs a few
    locked counter increments instead of thousands, and the labels of the
    one frame text it sends to all of them are read once."""
    tally = _tally_on_loop()
    if tally is None:
        key, size = _key_and_size(text)
        _count_frames_out(key, 1)
        _count_bytes_out(size, wire_bytes)
        if committed_at is not None:
            _delivered(None, committed_at)
        return
    if text is tally.last_text:
        key, size = tally.last_key, tally.last_size
    else:
        key, size = _key_and_size(text)
        tally.last_text, tally.last_key, tally.last_size = text, key, size
    tally.frames[key] = tally.frames.get(key, 0) + 1
    tally.bytes += size
    tally.wire_bytes += wire_bytes
    if committed_at is not None:
        _delivered(tally, committed_at)


def _delivered(tally: "_LoopTally | None", committed_at: float) -> None:
    """DELIVERY_LATENCY from a live change's commit, tallied on the loop where
    there is a tally (a histogram's observation is two locked increments)."""
    seconds = since(committed_at)
    if tally is None or tally.latency_counts is None:
        DELIVERY_LATENCY.observe(seconds)
        return
    # The bucket Histogram.observe picks: the first whose bound is >= seconds.
    tally.latency_counts[bisect.bisect_left(_delivery_bounds, seconds)] += 1
    tally.latency_sum += seconds


def _key_and_size(text: str) -> tuple[str, int]:
    """The frame's label key (its text up to its type, or its kind for an event) and its size in bytes."""
    if text.startswith(_EVENT_PREFIX):
        key = text[: text.find('"', len(_EVENT_PREFIX))]
    else:
        key = text[: text.find('"', len(_TYPE_PREFIX))]
    return key, len(text) if text.isascii() else len(text.encode())


class _LoopTally:
    """What the gateway's loop sent since its last turn, not yet in the metrics:
    touched on that loop only, and put into the metrics once, at its next turn
    (so they are behind by at most that turn)."""

    __slots__ = (
        "frames",
        "bytes",
        "wire_bytes",
        "latency_counts",
        "latency_sum",
        "loop",
        "flushed",
        "last_text",
        "last_key",
        "last_size",
    )

    def __init__(self, loop):
        self.loop = loop
        self.frames: dict[str, int] = {}
        self.bytes = 0
        self.wire_bytes = 0
        # None where the histogram is not prometheus_client's (METRICS_ENABLED off).
        self.latency_counts = [0] * len(_delivery_bounds) if _delivery_bounds else None
        self.latency_sum = 0.0
        self.flushed = False
        # The last frame's text and its labels: a fan-out sends one text to every connection.
        self.last_text: str | None = None
        self.last_key = ""
        self.last_size = 0

    def flush(self) -> None:
        global _tally
        if _tally is self:
            _tally = None
        if self.flushed:  # already, when another loop took over (see _tally_on_loop)
            return
        self.flushed = True
        for key, count in self.frames.items():
            _count_frames_out(key, count)
        _count_bytes_out(self.bytes, self.wire_bytes)
        if self.latency_counts is not None and any(self.latency_counts):
            for bucket, count in zip(DELIVERY_LATENCY._buckets, self.latency_counts, strict=True):
                if count:
                    bucket.inc(count)
            DELIVERY_LATENCY._sum.inc(self.latency_sum)


_tally: _LoopTally | None = None
_delivery_bounds = (
    list(getattr(DELIVERY_LATENCY, "_upper_bounds", ())) if isinstance(DELIVERY_LATENCY, Histogram) else []
)


def _tally_on_loop() -> _LoopTally | None:
    """This turn's tally of the running loop (None off a loop); the first use
    in a turn schedules its flush."""
    global _tally
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    tally = _tally
    if tally is None or tally.loop is not loop:
        if tally is not None:
            tally.flush()  # another loop's, whose turn never came (a test's closed loop)
        tally = _tally = _LoopTally(loop)
        loop.call_soon(tally.flush)
    return tally


def _count_frames_out(key: str, count: int) -> None:
    child = _frames_out.get(key)
    if child is None:
        child = _frame_out_child(key)
    child.inc(count)


def _count_bytes_out(size: int, wire_bytes: int) -> None:
    if size:
        BYTES_OUT.inc(size)
    if wire_bytes:
        BYTES_OUT_WIRE.inc(wire_bytes)


def _frame_out_child(key: str):
    frame_type, kind = "other", ""
    if key.startswith(_EVENT_PREFIX):
        frame_type, kind = "event", key[len(_EVENT_PREFIX) :]
    elif key.startswith(_TYPE_PREFIX):
        frame_type = key[len(_TYPE_PREFIX) :]
    child = FRAMES_OUT.labels(frame_type, kind)
    if len(_frames_out) < _FRAME_LABELS_MAX:
        _frames_out[key] = child
    return child


# The close codes of docs/protocol.md and the RFC's; any other code a client
# closes with is counted as "other", so clients cannot mint label values.
CLOSE_CODES = {1000, 1001, 1005, 1006, 1011, 4401, 4403, 4408, 4410, 4429, 4430, 4431, 4500, 4503}
REFUSAL_REASONS = {
    4401: "unauthorized",
    4403: "forbidden_origin",
    4410: "device_revoked",
    4431: "too_many_connections",
}


def disconnected(code) -> None:
    child = _disconnects.get(code)
    if child is None:
        child = _disconnects[code] = DISCONNECTS.labels(str(code) if code in CLOSE_CODES else "other")
    child.inc()


def refused(reason) -> None:
    """A handshake was refused: `reason` is a close code of REFUSAL_REASONS or a name."""
    HANDSHAKE_REFUSALS.labels(REFUSAL_REASONS.get(reason, reason)).inc()


def since(timestamp) -> float:
    """Seconds from a wall-clock `timestamp` (time.time() in this or another
    process) until now; never negative (clocks of two hosts may differ a little)."""
    return max(time.time() - timestamp, 0.0)


class DatabasePoolCollector:
    """psycopg's connection pool of each PostgreSQL database, read at scrape time
    (the pool keeps these figures itself; nothing is added to a query's path)."""

    GAUGES = (
        ("realtime_db_pool_size", "pool_size", "Connections the pool holds (in use or idle)."),
        ("realtime_db_pool_max", "pool_max", "The pool's maximum size (DB_POOL_MAX_SIZE)."),
        ("realtime_db_pool_available", "pool_available", "Idle connections in the pool."),
        ("realtime_db_pool_waiting", "requests_waiting", "Callers waiting for a connection now."),
    )
    COUNTERS = (
        ("realtime_db_pool_requests", "requests_num", 1, "Connections asked of the pool."),
        ("realtime_db_pool_queued", "requests_queued", 1, "Requests that had to wait for a connection."),
        ("realtime_db_pool_wait_seconds", "requests_wait_ms", 1000, "Time spent waiting for a connection."),
        ("realtime_db_pool_errors", "requests_errors", 1, "Requests that got no connection (timed out)."),
        ("realtime_db_pool_connections_lost", "connections_lost", 1, "Connections found broken and dropped."),
    )

    def collect(self):
        from django.db import connections
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = {}
        for alias in connections:
            pools = getattr(type(connections[alias]), "_connection_pools", None) or {}
            pool = pools.get(alias)  # only a pool the process has made: looking creates none
            if pool is not None:
                stats[alias] = pool.get_stats()
        for name, key, documentation in self.GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["database"])
            for alias, values in stats.items():
                family.add_metric([alias], values.get(key, 0))
            yield family
        for name, key, scale, documentation in self.COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["database"])
            for alias, values in stats.items():
                family.add_metric([alias], values.get(key, 0) / scale)
            yield family


if ENABLED:
    from prometheus_client import REGISTRY

    REGISTRY.register(DatabasePoolCollector())
