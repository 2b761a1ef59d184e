"""Each process's heartbeat for the status page: its figures, every few seconds.

A daemon thread per process (started by realtime_sync/asgi.py for `web`, by
listen_changes for `listener`) reads this process's own metrics every
STATUS_REPORT_SECONDS and writes them to its `ProcessReport` row: totals, and
what changed over the last STATUS_WINDOW_SECONDS (kept in memory here), with
the delivery-latency histogram's buckets for that window so the page can merge
the processes' histograms into one p50 and p99. A thread, not a task of the
event loop: a web process reports before its first WebSocket connection, and
a report waiting on a slow database holds up no delivery.
"""

import collections
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import metrics

logger = logging.getLogger(__name__)

FORGET_AFTER_SECONDS = 86400  # rows of processes silent this long are deleted

# Counted figures: name -> function of the samples {(sample name, labels): value}.
TOTALS = {
    "sends": lambda s: _sum(s, "realtime_requests_total", type="send", outcome="ok"),
    "requests": lambda s: _sum(s, "realtime_requests_total"),
    "request_errors": lambda s: _sum(s, "realtime_requests_total") - _sum(s, "realtime_requests_total", outcome="ok"),
    "internal_errors": lambda s: (
        _sum(s, "realtime_requests_total", outcome="internal_error")
        + _sum(s, "realtime_disconnects_total", code="4500")
    ),
    "layer_errors": lambda s: _sum(s, "realtime_layer_errors_total") + _sum(s, "realtime_publish_errors_total"),
    "deliveries": lambda s: _sum(s, "realtime_delivery_latency_seconds_count"),
    "frames_out": lambda s: _sum(s, "realtime_frames_out_total"),
    "resets": lambda s: _sum(s, "realtime_catchup_resets_total"),
    "refusals": lambda s: _sum(s, "realtime_handshake_refusals_total"),
    "listener_published": lambda s: _sum(s, "realtime_listener_changes_published_total"),
    "listener_reconnects": lambda s: _sum(s, "realtime_listener_reconnects_total"),
}
WATCHED = (
    metrics.REQUESTS,
    metrics.DISCONNECTS,
    metrics.LAYER_ERRORS,
    metrics.PUBLISH_ERRORS,
    metrics.DELIVERY_LATENCY,
    metrics.FRAMES_OUT,
    metrics.RESETS,
    metrics.HANDSHAKE_REFUSALS,
    metrics.LISTENER_PUBLISHED,
    metrics.LISTENER_RECONNECTS,
    metrics.CONNECTIONS_OPEN,
    metrics.LAYER_UP,
    metrics.DRAINING,
    metrics.LISTENER_CONNECTED,
)


def _sum(samples: dict, name: str, **labels) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def read_samples() -> dict:
    """This process's figures: {(sample name, ((label, value), ...)): value}."""
    samples = {}
    for metric in WATCHED:
        for family in metric.collect():
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def latency_buckets(samples: dict) -> list[tuple[float, float]]:
    """The delivery histogram's cumulative buckets, [(upper bound, count)], +Inf last."""
    buckets = [
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "realtime_delivery_latency_seconds_bucket"
    ]
    return sorted(buckets)


def quantile(q: float, buckets) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear within
    the bucket the rank falls in; the highest finite bound if it is the last."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


class Reporter:
    def __init__(self, kind: str):
        self.kind = kind
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = timezone.now()
        self.history: collections.deque = collections.deque()  # (monotonic, totals, buckets)
        self.failing = False

    def figures(self) -> dict:
        samples = read_samples()
        now = time.monotonic()
        totals = {name: figure(samples) for name, figure in TOTALS.items()}
        buckets = latency_buckets(samples)
        self.history.append((now, totals, buckets))
        while len(self.history) > 2 and now - self.history[1][0] >= settings.STATUS_WINDOW_SECONDS:
            self.history.popleft()
        then, old_totals, old_buckets = self.history[0]
        old_counts = dict(old_buckets)
        window_buckets = [(bound, count - old_counts.get(bound, 0.0)) for bound, count in buckets]
        return {
            "connections": int(_sum(samples, "realtime_connections_open")),
            "draining": bool(_sum(samples, "realtime_draining")),
            "layer_up": bool(_sum(samples, "realtime_layer_up")) if self.kind == "web" else None,
            "listener_connected": bool(_sum(samples, "realtime_listener_connected"))
            if self.kind == "listener"
            else None,
            "totals": totals,
            "window_seconds": round(now - then, 1),
            "window": {name: totals[name] - old_totals.get(name, 0.0) for name in totals},
            "latency_buckets": [["+Inf" if b == float("inf") else b, c] for b, c in window_buckets],
        }

    def report(self) -> None:
        from .models import ProcessReport

        figures = self.figures()
        now = timezone.now()
        try:
            ProcessReport.objects.update_or_create(
                name=self.name,
                defaults={"kind": self.kind, "started_at": self.started_at, "reported_at": now, "figures": figures},
            )
            ProcessReport.objects.filter(
                reported_at__lt=now - timezone.timedelta(seconds=FORGET_AFTER_SECONDS)
            ).delete()
            if self.failing:
                logger.warning("status report written again")
            self.failing = False
        except Exception as error:
            if not self.failing:  # one line per outage, not one per report
                logger.warning("writing the status report failed (%s: %s)", type(error).__name__, error)
            self.failing = True
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool until the next report

    def run(self) -> None:
        while True:
            try:
                self.report()
            except Exception:
                logger.exception("status report failed")
            time.sleep(settings.STATUS_REPORT_SECONDS)


_started = threading.Lock()
_reporter: Reporter | None = None


def start(kind: str) -> None:
    """Report this process's figures from now on (once per process; no-op with
    metrics off or STATUS_REPORT_SECONDS 0)."""
    global _reporter
    if not metrics.ENABLED or settings.STATUS_REPORT_SECONDS <= 0:
        return
    with _started:
        if _reporter is not None:
            return
        _reporter = Reporter(kind)
    threading.Thread(target=_reporter.run, name="status-reporter", daemon=True).start()
