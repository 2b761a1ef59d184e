"""The pieces of observability that need no server: log formats, metric labels, quantiles."""

import asyncio
import json
import logging

import pytest
from prometheus_client import CollectorRegistry, Histogram

from observability import logs, metrics
from observability.exporter import parse_bind
from observability.reporter import quantile


def record(message="hello %s", args=("world",), **extra):
    made = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_is_one_object_with_the_bound_context():
    def in_a_connection():
        logs.bind(connection_id="c1", device_id=7)
        token = logs.request_ref("r-9")
        try:
            return logs.JsonFormatter().format(record(status_code=404))
        finally:
            logs.reset_request_ref(token)

    import contextvars

    line = contextvars.Context().run(in_a_connection)  # a fresh context, as a new connection's task
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "hello world" and data["level"] == "WARNING" and data["logger"] == "gateway.test"
    assert (data["connection_id"], data["device_id"], data["ref"], data["status_code"]) == ("c1", 7, "r-9", 404)
    outside = contextvars.Context().run(lambda: logs.JsonFormatter().format(record()))
    assert "connection_id" not in json.loads(outside)  # bound in that context only


def test_a_traceback_stays_on_the_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.JsonFormatter().format(failed)
    assert len(line.splitlines()) == 1
    assert "ValueError: boom" in json.loads(line)["exc_info"]


def test_text_lines_carry_the_context_at_the_end():
    import contextvars

    def run():
        logs.bind(device_id=3)
        return logs.TextFormatter().format(record())

    assert contextvars.Context().run(run) == "WARNING gateway.test: hello world [device_id=3]"


def test_quantiles_of_cumulative_buckets():
    buckets = [(0.01, 50.0), (0.1, 99.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert 0.01 < quantile(0.99, buckets) <= 0.1
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 10.0)]) == 0.1  # past the last bound: the last bound


def test_frames_out_on_a_loop_reach_the_counters_together_at_its_next_turn():
    created = metrics.FRAMES_OUT.labels("event", "message.created")
    edited = metrics.FRAMES_OUT.labels("event", "message.edited")
    text = '{"type":"event","kind":"message.created","conversation_id":1,"seq":2,"payload":{}}'
    other = '{"type":"event","kind":"message.edited","conversation_id":1,"seq":3,"payload":{"body":"é"}}'

    async def fan_out():
        before = created._value.get(), edited._value.get(), metrics.BYTES_OUT._value.get()
        for n in range(1000):
            metrics.frame_out(text, 50)
            if n % 100 == 0:  # another frame between the fan-out's: its own labels and size
                metrics.frame_out(other, 60)
        assert created._value.get() == before[0], "tallied, not counted one by one"
        await asyncio.sleep(0)
        return before

    wire_before = metrics.BYTES_OUT_WIRE._value.get()
    created_before, edited_before, bytes_before = asyncio.run(fan_out())
    assert created._value.get() == created_before + 1000
    assert edited._value.get() == edited_before + 10
    assert metrics.BYTES_OUT._value.get() == bytes_before + 1000 * len(text) + 10 * len(other.encode())
    assert metrics.BYTES_OUT_WIRE._value.get() == wire_before + 1000 * 50 + 10 * 60


def histogram_samples(histogram) -> dict:
    return {
        (sample.name.rsplit("_", 1)[-1], sample.labels.get("le")): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
    }


def test_live_delivery_latencies_on_a_loop_land_in_the_buckets_observe_would_pick(monkeypatch):
    monkeypatch.setattr(metrics, "since", lambda seconds: seconds)  # committed_at stands for the latency
    latencies = [0.001, 0.007, 0.007, 0.09, 0.3, 40.0]
    reference = Histogram("reference_latency", "", buckets=metrics.LATENCY_BUCKETS, registry=CollectorRegistry())
    for seconds in latencies:
        reference.observe(seconds)
    before = histogram_samples(metrics.DELIVERY_LATENCY)

    async def deliver():
        for seconds in latencies:
            metrics.frame_out('{"type":"event","kind":"message.created"}', 0, seconds)
        assert histogram_samples(metrics.DELIVERY_LATENCY) == before, "tallied until the loop's next turn"
        await asyncio.sleep(0)

    asyncio.run(deliver())
    after = histogram_samples(metrics.DELIVERY_LATENCY)
    assert {key: after[key] - before[key] for key in after} == pytest.approx(histogram_samples(reference))


def test_frame_labels_come_from_the_frame_text():
    before = metrics.FRAMES_OUT.labels("event", "message.created")._value.get()
    metrics.frame_out('{"type":"event","kind":"message.created","conversation_id":1,"seq":2,"payload":{}}')
    assert metrics.FRAMES_OUT.labels("event", "message.created")._value.get() == before + 1
    wire_before = metrics.BYTES_OUT_WIRE._value.get()
    metrics.frame_out('{"type":"pong","ref":"r","server_time":"2025-05-02T09:30:25.118Z"}', 61)
    assert metrics.BYTES_OUT_WIRE._value.get() == wire_before + 61
    ok_before = metrics.FRAMES_OUT.labels("ok", "")._value.get()
    metrics.frame_out('{"type":"ok","ref":"r","result":{}}')
    assert metrics.FRAMES_OUT.labels("ok", "")._value.get() == ok_before + 1


def test_clients_cannot_mint_label_values():
    metrics.disconnected(4999)
    metrics.frame_in("made-up-type")
    metrics.request_done("made-up-type", "unknown_type", 0.001)
    labels = {sample.labels.get("code") for family in metrics.DISCONNECTS.collect() for sample in family.samples}
    assert "4999" not in labels and "other" in labels
    types = {sample.labels.get("type") for family in metrics.REQUESTS.collect() for sample in family.samples}
    assert "made-up-type" not in types and "unknown" in types


@pytest.mark.parametrize("bind", ["9101", "host:", ":9101", "127.0.0.1:99999", "127.0.0.1:x"])
def test_a_bad_metrics_address_is_a_clear_error(bind):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind(bind)


def test_a_metrics_address():
    assert parse_bind("127.0.0.1:9101") == ("127.0.0.1", 9101)
    assert parse_bind("[::1]:9101") == ("::1", 9101)


def defined_metric_names() -> set[str]:
    from prometheus_client import REGISTRY

    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("realtime_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_docs_describe_every_metric_and_the_dashboard_charts_only_real_ones():
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    names = defined_metric_names()
    assert "realtime_delivery_latency_seconds" in names and "realtime_connects_total" in names
    text = (docs / "operations.md").read_text()
    assert not [name for name in names if f"`{name}" not in text]
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    charted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"realtime_[a-z_]+", target["expr"])
    }
    assert charted and charted <= names, charted - names
