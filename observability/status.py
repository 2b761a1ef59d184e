"""The status page's reading of the processes' reports: one row per process,
and the whole service's figures over the window (rates summed, latency
histograms merged before taking quantiles: averaging p99s would be wrong)."""

from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from .models import ProcessReport
from .reporter import quantile

SHOWN_SECONDS = 3600  # processes silent longer than this are left off the page


@dataclass
class ProcessRow:
    report: ProcessReport
    silent_seconds: float
    stale: bool
    figures: dict = field(default_factory=dict)

    def rate(self, name: str) -> float | None:
        seconds = self.figures.get("window_seconds") or 0
        return self.figures.get("window", {}).get(name, 0) / seconds if seconds > 0 else None

    @property
    def p50(self):
        return quantile(0.5, _buckets(self.figures))

    @property
    def p99(self):
        return quantile(0.99, _buckets(self.figures))

    @property
    def sends_per_second(self):
        return self.rate("sends")

    @property
    def deliveries_per_second(self):
        return self.rate("deliveries")

    @property
    def errors(self) -> int:
        window = self.figures.get("window", {})
        return int(window.get("internal_errors", 0) + window.get("layer_errors", 0))

    @property
    def state(self) -> str:
        if self.stale:
            return "silent"
        if self.figures.get("draining"):
            return "draining"
        if self.figures.get("layer_up") is False or self.figures.get("listener_connected") is False:
            return "degraded"
        return "ok"


def _buckets(figures: dict) -> list[tuple[float, float]]:
    return [(float("inf") if b == "+Inf" else float(b), c) for b, c in figures.get("latency_buckets", [])]


@dataclass
class ServiceStatus:
    processes: list[ProcessRow]
    connections: int
    sends_per_second: float
    deliveries_per_second: float
    p50: float | None
    p99: float | None
    errors: int
    request_errors: int
    resets: int
    target: float

    @property
    def healthy(self) -> bool:
        live = [p for p in self.processes if not p.stale]
        return (
            bool(live)
            and all(p.state == "ok" for p in live)
            and self.errors == 0
            and (self.p99 is None or self.p99 <= self.target)
        )


def service_status() -> ServiceStatus:
    now = timezone.now()
    stale_after = max(3 * settings.STATUS_REPORT_SECONDS, 30)
    rows = []
    for report in ProcessReport.objects.filter(reported_at__gte=now - timezone.timedelta(seconds=SHOWN_SECONDS)):
        silent = (now - report.reported_at).total_seconds()
        rows.append(ProcessRow(report, silent, silent > stale_after, report.figures or {}))
    live = [row for row in rows if not row.stale]
    merged: dict[float, float] = {}
    for row in live:
        for bound, count in _buckets(row.figures):
            merged[bound] = merged.get(bound, 0.0) + count
    buckets = sorted(merged.items())
    return ServiceStatus(
        processes=rows,
        connections=sum(row.figures.get("connections", 0) for row in live),
        sends_per_second=sum(row.sends_per_second or 0 for row in live),
        deliveries_per_second=sum(row.deliveries_per_second or 0 for row in live),
        p50=quantile(0.5, buckets),
        p99=quantile(0.99, buckets),
        errors=sum(row.errors for row in live),
        request_errors=int(sum(row.figures.get("window", {}).get("request_errors", 0) for row in live)),
        resets=int(sum(row.figures.get("window", {}).get("resets", 0) for row in live)),
        target=settings.STATUS_DELIVERY_P99_TARGET,
    )
