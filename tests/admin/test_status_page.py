"""The admin's service status page: staff see every process's report; others are refused."""

import pytest
from django.urls import reverse
from django.utils import timezone

from observability import metrics
from observability import reporter as reporter_module
from observability.models import ProcessReport
from observability.reporter import Reporter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def only_the_reports_made_here(monkeypatch):
    """A test that imported the ASGI application started this process's own
    status reporter (a thread): its reports would join the ones a test makes."""
    if reporter_module._reporter is not None:
        monkeypatch.setattr(reporter_module._reporter, "report", lambda: None)
    ProcessReport.objects.all().delete()


def report(name, kind="web", *, silent_seconds=0.0, **figures):
    base = {"connections": 0, "totals": {}, "window": {}, "window_seconds": 60.0, "latency_buckets": []}
    now = timezone.now()
    return ProcessReport.objects.create(
        name=name,
        kind=kind,
        started_at=now,
        reported_at=now - timezone.timedelta(seconds=silent_seconds),
        figures={**base, **figures},
    )


def test_staff_see_every_process_and_the_service_figures(client, make_user):
    report(
        "host-a:1",
        connections=120,
        window={"sends": 600, "deliveries": 6000, "internal_errors": 0, "layer_errors": 0},
        latency_buckets=[[0.01, 3000], [0.05, 5900], [0.25, 6000], ["+Inf", 6000]],
    )
    report("host-b:2", connections=80, window={"sends": 300}, latency_buckets=[[0.01, 10], ["+Inf", 10]])
    report("host-c:3", kind="listener", silent_seconds=600, connections=1000)  # exited: shown, not counted
    report("host-d:4", kind="listener", listener_connected=False)  # lost its database
    client.force_login(make_user(is_staff=True))
    page = client.get(reverse("realtime-status"))
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("host-a:1", "host-b:2", "host-c:3", "host-d:4"):
        assert name in html
    status = page.context["status"]
    assert status.connections == 200  # the silent listener's figures are not counted
    assert status.sends_per_second == pytest.approx(15.0)
    assert 0.01 < status.p99 <= 0.25
    states = {row.report.name: row.state for row in status.processes}
    assert states == {"host-a:1": "ok", "host-b:2": "ok", "host-c:3": "silent", "host-d:4": "degraded"}
    assert not status.healthy  # the listener is not following the log
    assert "Delivery needs attention" in html


def test_a_healthy_service_says_so(client, make_user):
    report("host-a:1", connections=3, latency_buckets=[[0.05, 100], ["+Inf", 100]], layer_up=True)
    client.force_login(make_user(is_staff=True))
    page = client.get(reverse("realtime-status"))
    assert page.context["status"].healthy
    assert "Delivery is healthy" in page.content.decode()


def test_the_page_is_refused_to_others(client, make_user):
    url = reverse("realtime-status")
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(make_user(is_staff=False))
    member = client.get(url)
    assert member.status_code == 302 and "/admin/login/" in member["Location"]


def test_the_admin_index_links_to_it(client, make_user):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    assert reverse("realtime-status") in client.get(reverse("admin:index")).content.decode()


def test_a_process_reports_its_own_figures():
    reporter = Reporter("web")
    metrics.DELIVERY_LATENCY.observe(0.02)
    reporter.report()
    row = ProcessReport.objects.get(name=reporter.name)
    assert row.kind == "web"
    assert row.figures["totals"]["deliveries"] >= 1
    metrics.DELIVERY_LATENCY.observe(0.03)
    reporter.report()
    row.refresh_from_db()
    assert row.figures["window"]["deliveries"] == 1  # what changed since the first report
    counts = dict((str(bound), count) for bound, count in row.figures["latency_buckets"])
    assert counts["0.025"] == 0 and counts["0.05"] == 1
