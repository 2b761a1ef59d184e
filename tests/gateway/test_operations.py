"""Operating the service, against a real server: metrics move with traffic, the
health endpoints tell the truth, logs are one JSON object per line, and every
process reports for the admin's status page."""

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from conversations.services import create_conversation
from observability.models import ProcessReport

from .harness import Closed, Device, ServerProcess, free_port, started_on_first_use

db = database_sync_to_async
TOKEN = "test-metrics-token"


@pytest.fixture(scope="module")
def _ops_server(django_db_setup):
    with started_on_first_use(METRICS_TOKEN=TOKEN, STATUS_REPORT_SECONDS="0.5") as ops_server:
        yield ops_server


@pytest.fixture
def ops(_ops_server, transactional_db):
    return _ops_server()


async def http_get(port: int, path: str, headers=None) -> tuple[int, dict, bytes]:
    def get():
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    return await asyncio.to_thread(get)


async def scrape(server) -> dict:
    """{(sample name, frozenset of labels): value} of the server's /metrics."""
    status, _, body = await http_get(server.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until_metric(server, name: str, expected: float, timeout: float = 10.0, **labels) -> dict:
    """Scrape until the sample reaches `expected` (the server counts right after
    writing the frame, so the client may see it a moment before the metric moves)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(server)
        if value(samples, name, **labels) >= expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_a_send_moves_the_counters_and_its_deliveries_the_latency_histogram(ops, account):
    (alice, [alice_token]), (bob, [bob_token]) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    cid = conversation.pk
    sender = await Device(ops.url, alice_token, name="sender").connect()
    reader = await Device(ops.url, bob_token, name="reader").connect()
    for device in (sender, reader):
        assert (await device.request("sync", cursors={str(cid): 1}))["type"] == "ok"

    before = await scrape(ops)
    reply = await sender.request("send", conversation_id=cid, client_msg_id="m1", body="hello")
    assert reply["type"] == "ok", reply
    seq = reply["result"]["seq"]
    for device in (sender, reader):  # the sender's own device gets the event too
        await device.received(lambda f: f["type"] == "event" and f.get("seq") == seq)
    deliveries = "realtime_delivery_latency_seconds_count"
    await until_metric(ops, deliveries, value(before, deliveries) + 2)
    # The process's own hub takes the event before the layer's send is done,
    # and the publish is counted once that send returns.
    published = "realtime_events_published_total"
    after = await until_metric(ops, published, value(before, published) + 1)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("realtime_requests_total", type="send", outcome="ok") == 1
    assert delta("realtime_frames_in_total", type="send") == 1
    assert delta(deliveries) == 2  # one per device, each observed when handed to its transport
    assert delta("realtime_frames_out_total", type="event", kind="message.created") == 2
    assert delta("realtime_request_duration_seconds_count", type="send") == 1
    assert delta("realtime_bytes_out_total") > 0
    assert delta("realtime_events_published_total") >= 1
    assert delta("realtime_publish_dispatch_latency_seconds_count") >= 1
    # In seconds: a local delivery takes well under 5 s.
    assert delta("realtime_delivery_latency_seconds_bucket", le="5.0") == 2
    assert value(after, "realtime_connections_open") >= 2
    # On PostgreSQL the send ran on a connection of the server's event loop
    # (core/loop_db.py), given back since; on SQLite, on the write threads.
    loop_connections = value(after, "realtime_db_loop_connections")
    assert loop_connections >= 1 if connection.vendor == "postgresql" else loop_connections == 0
    assert value(after, "realtime_db_loop_connections_in_use") == 0

    errors_before = value(after, "realtime_requests_total", type="send", outcome="not_found")
    reply = await sender.request("send", conversation_id=10**9, client_msg_id="m2", body="nowhere")
    assert reply["code"] == "not_found"
    samples = await scrape(ops)
    assert value(samples, "realtime_requests_total", type="send", outcome="not_found") == errors_before + 1

    await reader.close()
    await until_metric(
        ops, "realtime_disconnects_total", value(after, "realtime_disconnects_total", code="1000") + 1, code="1000"
    )
    await sender.close()


async def test_a_refused_handshake_counts_its_reason(ops):
    before = await scrape(ops)
    device = Device(ops.url, "not-a-token")
    await device.connect(expect_hello=False)
    with pytest.raises(Closed) as closed:
        await device.next_frame()
    assert closed.value.code == 4401
    reason = {"reason": "unauthorized"}
    samples = await until_metric(
        ops,
        "realtime_handshake_refusals_total",
        value(before, "realtime_handshake_refusals_total", **reason) + 1,
        **reason,
    )
    assert (
        value(samples, "realtime_handshake_refusals_total", **reason)
        == value(before, "realtime_handshake_refusals_total", **reason) + 1
    )
    assert value(samples, "realtime_connects_total") == value(before, "realtime_connects_total")


async def test_metrics_answer_only_the_token(ops, server):
    assert (await http_get(ops.port, "/metrics"))[0] == 401
    status, headers, _ = await http_get(ops.port, "/metrics", {"Authorization": "Bearer wrong"})
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    status, headers, body = await http_get(ops.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"realtime_connections_open" in body and b"process_cpu_seconds_total" in body
    # No METRICS_TOKEN (the shared server): no metrics at all.
    assert (await http_get(server.port, "/metrics", {"Authorization": "Bearer "}))[0] == 404


async def test_health_endpoints_of_a_ready_server(ops):
    status, headers, body = await http_get(ops.port, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = await http_get(ops.port, "/readyz", {"Host": "10.1.2.3"})  # a probe comes by IP
    answer = json.loads(body)
    assert status == 200, answer
    assert headers["Content-Type"] == "application/json"
    assert answer["status"] == "ready"
    assert answer["checks"]["database"] == "ok" and answer["checks"]["layer_receive_loop"] == "ok"


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


async def readiness_of(**env) -> tuple[int, dict]:
    server = ServerProcess(HEALTH_CHECK_TIMEOUT_SECONDS="1", **env).start()
    try:
        status, _, body = await http_get(server.port, "/readyz")
        return status, json.loads(body)
    finally:
        server.stop()


@pytest.mark.django_db
async def test_unready_when_postgresql_is_unreachable():
    status, answer = await readiness_of(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port()}/nothing")
    assert status == 503, answer
    assert answer["status"] == "unready" and answer["checks"]["database"] != "ok"


@pytest.mark.django_db
async def test_unready_when_redis_is_unreachable():
    status, answer = await readiness_of(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/5")
    assert status == 503, answer
    assert answer["checks"]["redis"] != "ok" and answer["checks"]["database"] == "ok"


async def test_a_draining_server_turns_unready_before_it_closes_connections(transactional_db, account):
    (_, [token]) = await account()
    server = ServerProcess(WS_DRAIN_UNREADY_SECONDS="3").start()
    try:
        assert (await http_get(server.port, "/readyz"))[0] == 200
        device = await Device(server.url, token).connect()
        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (status := (await http_get(server.port, "/readyz"))[0]) == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert status == 503
        _, _, body = await http_get(server.port, "/readyz")
        assert json.loads(body)["checks"]["draining"] == "yes"
        assert device.close_code is None  # still connected: unready comes first
        newcomer = await Device(server.url, token).connect(expect_hello=False)
        assert await newcomer.wait_closed() == 4503
        assert await device.wait_closed() == 4503
        assert server.process.wait(15) == 0
    finally:
        server.stop()


async def test_json_logs_are_one_object_per_line_with_the_connection(transactional_db, account):
    (_, [token]) = await account()
    server = ServerProcess(
        LOG_FORMAT="json", WS_RATE_PER_CONNECTION="0.01", WS_RATE_BURST_PER_CONNECTION="1", WS_RATE_STRIKES="1"
    ).start()
    try:
        device = await Device(server.url, token).connect()
        for n in range(5):  # past the limit: refused, then closed, with a warning logged
            try:
                await device.send_raw(json.dumps({"type": "ping", "ref": f"p{n}"}))
            except Exception:
                break
        assert await device.wait_closed() == 4430
        deadline = time.monotonic() + 10
        while "kept sending" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lines = [line for line in server.output().splitlines() if line.startswith("{")]
        records = [json.loads(line) for line in lines]  # every one parses
        assert {"time", "level", "logger", "message"} <= set(records[0])
        [warning] = [r for r in records if "kept sending" in r["message"]]
        assert warning["level"] == "WARNING"
        assert warning["device_id"] == device.hello["device"]["id"]
        assert warning["connection_id"]
    finally:
        server.stop()


async def test_no_line_is_logged_twice(transactional_db):
    server = ServerProcess(DEBUG="1").start()
    try:
        assert (await http_get(server.port, "/no-such-page"))[0] == 404
        deadline = time.monotonic() + 10
        while "Not Found: /no-such-page" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.output().count("Not Found: /no-such-page") == 1, server.output()
    finally:
        server.stop()


async def test_the_server_reports_for_the_status_page(ops):
    await http_get(ops.port, "/healthz")
    # Other servers of the test session may report into the same database: wait for this one's.
    mine = ProcessReport.objects.filter(kind="web", name__endswith=f":{ops.process.pid}")
    deadline = time.monotonic() + 10
    while not await db(mine.exists)() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    report = await db(mine.get)()
    assert {"connections", "totals", "window", "latency_buckets"} <= set(report.figures)


@pytest.mark.postgres
@pytest.mark.redis
async def test_the_listener_serves_its_own_metrics(server, account, tmp_path, monkeypatch):
    from .test_sql_writes import ListenerProcess, room, sql_insert

    port = free_port()
    monkeypatch.setenv("LISTENER_METRICS_BIND", f"127.0.0.1:{port}")
    listener = ListenerProcess(tmp_path / "listener.log").start()
    try:
        await listener.logged("listening on realtime_changes")
        cid, alice, _, phone = await room(server, account)
        await sql_insert(cid, alice.pk, "written with psql")
        await phone.received(lambda f: f["type"] == "event" and f.get("seq") == 2)
        # The listener counts a change once its publish has returned, and the
        # phone may have the event (or the server's reconciliation may have
        # given it) a moment before: read until the count is there.
        deadline = time.monotonic() + 10
        while True:
            status, _, body = await http_get(port, "/metrics")
            assert status == 200
            samples = {
                sample.name: sample.value
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples
            }
            if samples["realtime_listener_changes_published_total"] >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # polling the listener, not waiting for time to pass
        assert samples["realtime_listener_notifications_total"] >= 1
        assert samples["realtime_listener_changes_published_total"] >= 1
        assert samples["realtime_listener_lag_seconds_count"] >= 1
        assert samples["realtime_listener_connected"] == 1
        await phone.close()
    finally:
        assert listener.stop() == 0
