"""Connection storms against the realtime_sync gateway (real servers, end to end).

    .venv/bin/python bench/storm.py --scenario connect|reconnect|redis-outage|idle-memory|all

Scenarios (bench/README.md, "Storms", says what each figure means):
  connect       N devices (one user each) connect all at once to P Daphne processes
                (round-robin) and sync: time until every device is live, per-device
                time to live, handshake failures, 4503 refusals, retries.
  reconnect     after `connect`: every socket dropped at once, M messages sent to every
                conversation, then all devices reconnect at once with their cursors while
                a steady flow of messages goes on: time until every device is live and has
                every seq exactly once, in order.
  redis-outage  servers on a private redis-server; devices live; a steady flow; the Redis
                process is killed, restarted after --outage-seconds: connections closed by
                the server, acknowledged messages lost, time from Redis back until every
                device has every message.
  idle-memory   K idle authenticated, synced connections on ONE server process: its RSS
                before and after, KiB per connection; the same for the plain Channels chat
                (bench/baseline_app) with K sockets in one room.

Production settings (DEBUG off, a SECRET_KEY, ALLOWED_HOSTS), the project's own database
(dropped and recreated) and, unless --shared-redis, a private redis-server on a free
port. Prints ONE JSON object on stdout; progress on stderr. 127.0.0.1 only; every wait
is bounded; a watchdog ends the run if it overstays --time-limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as product_bench  # noqa: E402  (its database helpers; importing runs nothing)
import storm_client  # noqa: E402
from loadgen import (  # noqa: E402
    BENCH,
    HOST,
    ROOT,
    Watchdog,
    _die_with_parent,
    code_identity,
    exit_on_signals,
    free_port,
    log,
    machine_busy_seconds,
    percentile,
    process_cpu_seconds,
    source_digest,
    start_servers,
    stop_servers,
)
from machine_speed import machine_speed_ms  # noqa: E402
from storm_client import Device, Sender, Tally, heartbeats  # noqa: E402

PROJECT_PACKAGES = {"gateway", "conversations", "core", "presence", "delivery", "devices", "realtime_sync"}
SCENARIOS = ("connect", "reconnect", "redis-outage", "idle-memory")


# ---------------------------------------------------------------------------
# Command line


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    p.add_argument("--devices", type=int, default=2000, help="devices (one user each) for connect/reconnect/outage")
    p.add_argument("--processes", type=int, default=2, help="server processes (devices spread round-robin)")
    p.add_argument("--group-size", type=int, default=10, help="users per small group conversation")
    p.add_argument("--groups-per-user", type=int, default=2, help="small groups each user is in")
    p.add_argument("--room-size", type=int, default=500, help="users per large room (each user in one); 0: none")
    p.add_argument(
        "--connect-cursors",
        choices=("stored", "none"),
        default="stored",
        help="connect storm: sync with the cursors the device holds (seq 1 of each conversation), "
        "or with none (a brand-new device: the server sends each conversation.created)",
    )
    p.add_argument("--senders", type=int, default=4, help="sender devices (of one extra user in every conversation)")
    p.add_argument("--behind", type=int, default=20, help="reconnect: messages each conversation gets while offline")
    p.add_argument(
        "--behind-window",
        type=int,
        default=24,
        help="reconnect: sends in flight while making the backlog (the server queues 8 per connection)",
    )
    p.add_argument("--flow-rate", type=float, default=20.0, help="reconnect: messages/s during the storm")
    p.add_argument("--outage-rate", type=float, default=50.0, help="redis-outage: messages/s for the whole run")
    p.add_argument("--outage-seconds", type=float, default=10.0, help="redis-outage: how long Redis stays dead")
    p.add_argument("--outage-lead", type=float, default=10.0, help="redis-outage: seconds of flow before the kill")
    p.add_argument(
        "--outage-tail", type=float, default=10.0, help="redis-outage: min seconds of flow after Redis is back"
    )
    p.add_argument("--idle-connections", type=int, default=10000, help="idle-memory: connections on one process")
    p.add_argument("--idle-concurrency", type=int, default=200, help="idle-memory: devices connecting at once")
    p.add_argument("--no-baseline", action="store_true", help="idle-memory: skip the plain Channels chat")
    p.add_argument("--storm-timeout", type=float, default=300.0, help="seconds for one storm to go live/complete")
    p.add_argument("--handshake-timeout", type=float, default=30.0, help="seconds for one open, hello, sync reply")
    p.add_argument("--settle-timeout", type=float, default=90.0, help="seconds to wait for the servers to go idle")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the last deliveries")
    p.add_argument("--db-name", default="realtime_storm")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--db-pool-max", type=int, default=10, help="DB_POOL_MAX_SIZE per server process")
    p.add_argument(
        "--shared-redis",
        action="store_true",
        help="connect/reconnect/idle on 127.0.0.1:6379 db --redis-db (flushed) instead of a private redis-server",
    )
    p.add_argument("--redis-db", type=int, default=9, help="with --shared-redis: the db (9 or 10, the bench's own)")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the product's servers (repeatable), e.g. WS_MAX_CONNECTING=200",
    )
    p.add_argument("--profile", metavar="DIR", help="run each server under cProfile, write DIR/server-N.prof")
    p.add_argument("--py-spy", metavar="DIR", help="sample each server with py-spy during the connect/reconnect storm")
    p.add_argument(
        "--py-spy-wall",
        action="store_true",
        help="py-spy samples every non-idle thread (waits on the database included) instead of the GIL holder",
    )
    p.add_argument("--py-spy-rate", type=int, default=67, help="py-spy samples per second")
    p.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")
    p.add_argument("--project", default=str(ROOT), help="the project tree to run (default: this one)")
    p.add_argument("--commit", help="run this commit (git archive to a temporary directory)")
    p.add_argument("--time-limit", type=float, default=3600.0, help="the watchdog's limit for the whole run")
    p.add_argument("--output", metavar="FILE", help="also write the result JSON to FILE")
    p.add_argument("--keep-server-logs", action="store_true")
    p.add_argument("--keep-db", action="store_true")
    args = p.parse_args()
    if args.devices < 1 or args.processes < 1 or args.senders < 1 or args.idle_connections < 1:
        sys.exit("--devices, --processes, --senders, --idle-connections must be >= 1")
    if args.shared_redis and args.redis_db not in (9, 10):
        sys.exit("--redis-db: only 9 or 10 (the db indexes bench/run.py and the baseline flush for themselves)")
    if not product_bench.DB_NAME_RE.match(args.db_name) or args.db_name in {"postgres", "template0", "template1"}:
        sys.exit("--db-name must be a plain lower-case identifier and not a system database")
    for item in args.server_env:
        if "=" not in item:
            sys.exit(f"--server-env {item!r}: expected NAME=VALUE")
    args.project = Path(args.project).resolve()
    args.commit_hash = None
    if args.commit:
        args.project, args.commit_hash = product_bench.export_commit(args.commit)
    args.scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if "reconnect" in args.scenarios and "connect" not in args.scenarios:
        args.scenarios = ("connect", *args.scenarios)  # reconnect follows a connect storm
    return args


# ---------------------------------------------------------------------------
# Machine, processes, memory


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit: the servers (our children) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def status_kib(pid: int, field: str = "VmRSS") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def runqueue_wait_seconds(pid: int) -> float | None:
    """Seconds the process's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat):
    on a shared machine, how much the others starved it."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


async def background_cores(seconds: float = 1.0) -> float:
    busy = machine_busy_seconds()
    await asyncio.sleep(seconds)
    return round((machine_busy_seconds() - busy) / seconds, 2)


class Meter:
    """CPU seconds of each server, the private Redis, PostgreSQL's backends of our
    database, this client process and the whole machine, over a window."""

    def __init__(self, env: Environment):
        self.env = env
        self.start_values = None
        self.started = 0.0

    def _read(self) -> dict:
        values = {f"server_{s.index}": s.cpu_seconds() for s in self.env.servers}
        for s in self.env.servers:
            values[f"server_{s.index}_runqueue_wait"] = runqueue_wait_seconds(s.process.pid)
        values["client"] = time.process_time()
        values["client_runqueue_wait"] = runqueue_wait_seconds(os.getpid())
        values["machine"] = machine_busy_seconds()
        values["postgres_backends"] = self.env.postgres.read()
        values["redis"] = self.env.redis_cpu()
        return values

    def start(self) -> Meter:
        self.start_values = self._read()
        self.started = time.monotonic()
        self.lag = LoopLag().start()
        return self

    def stop(self) -> dict:
        end = self._read()
        window = max(time.monotonic() - self.started, 1e-6)
        out = {"window_s": round(window, 2)}
        for name, value in end.items():
            first = self.start_values.get(name)
            if value is not None and first is not None:
                out[f"{name}_s"] = round(value - first, 2)
        out["servers_s"] = round(sum(v for k, v in out.items() if k.startswith("server_") and "wait" not in k), 2)
        out["servers_cores"] = round(out["servers_s"] / window, 2)
        out["client_cores"] = round(out.get("client_s", 0) / window, 2)
        out["machine_busy_cores"] = round(out.get("machine_s", 0) / window, 2)
        out["client_loop_max_lag_ms"] = self.lag.stop()
        return out


# ---------------------------------------------------------------------------
# Redis


class PrivateRedis:
    """A redis-server of our own on 127.0.0.1 and a free port: no persistence; killed and
    restarted by the outage scenario; stopped at the end. Nobody else uses it."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = BENCH / "results" / f"redis-{os.getpid()}-{self.port}.log"
        self.cpu_before_restart = 0.0

    def start(self, timeout: float = 15.0) -> None:
        self.log_path.parent.mkdir(exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        command += ["--protected-mode", "yes", "--daemonize", "no", "--logfile", str(self.log_path)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.log_path}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(host=HOST, port=self.port, socket_timeout=1, socket_connect_timeout=1)
            ok = client.ping()
            client.close()
            return bool(ok)
        except Exception:  # noqa: BLE001
            return False

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.cpu_before_restart += self.cpu_seconds_now() or 0.0
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def cpu_seconds_now(self) -> float | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return process_cpu_seconds(self.process.pid)

    def cpu_seconds(self) -> float | None:
        now = self.cpu_seconds_now()
        return None if now is None else self.cpu_before_restart + now

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# One environment: a database, a Redis, the data, the servers


class Environment:
    def __init__(self, args, *, users: int, processes: int, name: str):
        self.args = args
        self.users = users
        self.processes = processes
        self.name = name
        self.servers: list = []
        self.redis: PrivateRedis | None = None
        self.redis_url = ""
        self.postgres = product_bench.PostgresCpu(args)
        self.data: dict = {}
        self.secret_key = secrets.token_urlsafe(50)

    # -- environment of the servers --

    def server_env(self) -> dict:
        args = self.args
        env = {
            "DJANGO_SETTINGS_MODULE": "realtime_sync.settings",
            "DEBUG": "0",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": product_bench.pg_url(args, args.db_name),
            "REDIS_URL": self.redis_url,
            "DB_POOL_MIN_SIZE": "2",
            "DB_POOL_MAX_SIZE": str(args.db_pool_max),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # The senders are one user standing for every user that writes: the
            # per-user request limit (60/s) would otherwise throttle the backlog
            # and close the senders (4430) before the storm.
            **product_bench.UNLIMITED_REQUEST_RATES,
        }
        for item in args.server_env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def recorded_env(self) -> dict:
        env = dict(self.server_env())
        env["SECRET_KEY"] = f"<set, {len(self.secret_key)} characters>"
        return env

    def redis_cpu(self) -> float | None:
        return self.redis.cpu_seconds() if self.redis else None

    # -- setup --

    def open(self, *, private_redis: bool) -> None:
        args = self.args
        if private_redis or not args.shared_redis:
            self.redis = PrivateRedis(args.redis_server)
            self.redis.start()
            self.redis_url = f"redis://{HOST}:{self.redis.port}/0"
            log(f"[{self.name}] private redis-server on {HOST}:{self.redis.port} (pid {self.redis.process.pid})")
        else:
            self.redis_url = f"redis://{HOST}:6379/{args.redis_db}"
            self._flush_shared()
        log(f"[{self.name}] recreating database {args.db_name}")
        product_bench.recreate_database(args)
        started = time.perf_counter()
        out = Path(tempfile.mkstemp(prefix="storm-setup-", suffix=".json")[1])
        try:
            env = {**os.environ, **self.server_env(), "DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "4"}
            command = [sys.executable, str(BENCH / "storm_setup.py"), "--project", str(args.project)]
            command += ["--out", str(out), "--users", str(self.users), "--senders", str(args.senders)]
            command += ["--group-size", str(args.group_size), "--groups-per-user", str(args.groups_per_user)]
            command += ["--room-size", str(args.room_size)]
            done = subprocess.run(command, cwd=args.project, env=env, capture_output=True, text=True, timeout=1200)
            if done.returncode != 0:
                raise RuntimeError(f"setup failed:\n{done.stderr[-3000:]}")
            self.data = json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)
        self.data["timings"]["wall_s"] = round(time.perf_counter() - started, 2)
        counts = self.data["counts"]
        log(
            f"[{self.name}] setup: {counts['users']} users, {counts['conversations']} conversations, "
            f"{counts['memberships']} memberships in {self.data['timings']['wall_s']}s"
        )

    def _flush_shared(self) -> None:
        import redis

        client = redis.Redis(host=HOST, port=6379, db=self.args.redis_db, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()

    def start_servers(self, processes: int | None = None) -> None:
        self.servers.extend(
            start_servers(
                processes or self.processes,
                "realtime_sync.asgi:application",
                self.server_env(),
                self.args,
                cwd=self.args.project,
            )
        )

    def stop_servers(self) -> None:
        stop_servers(self.servers)
        self.servers.clear()

    def close(self) -> None:
        self.stop_servers()
        if not self.args.keep_db:
            try:
                product_bench.drop_database(self.args)
            except Exception as error:  # noqa: BLE001
                log(f"[{self.name}] dropping the database failed: {error}")
        if self.redis is not None:
            self.redis.stop()
        elif self.args.shared_redis and not self.args.keep_db:
            try:
                self._flush_shared()
            except Exception as error:  # noqa: BLE001
                log(f"[{self.name}] flushing Redis db {self.args.redis_db} failed: {error}")

    # -- the data --

    def devices(self, *, initial_cursor: int = 1) -> list[Device]:
        ports = [s.port for s in self.servers]
        return [
            Device(
                d["index"],
                d["token"],
                ports[d["index"] % len(ports)],
                d["conversations"],
                initial_cursor=initial_cursor,
            )
            for d in self.data["devices"]
        ]

    def senders(self) -> list[Sender]:
        ports = [s.port for s in self.servers]
        return [Sender(s["index"], s["token"], ports[s["index"] % len(ports)]) for s in self.data["senders"]]

    def conversation_ids(self) -> list[int]:
        return [int(c) for c in self.data["conversations"]]

    def last_seqs_from_db(self) -> dict[int, int]:
        with _db_connection(self.args) as conn:
            rows = conn.execute("SELECT id, last_seq FROM conversations_conversation").fetchall()
        return {int(i): int(s) for i, s in rows}

    def members(self) -> dict[int, list[int]]:
        return {int(c): v["members"] for c, v in self.data["conversations"].items()}


def _db_connection(args):
    import psycopg

    return psycopg.connect(
        f"postgresql://{args.pg_user}@{HOST}:{args.pg_port}/{args.db_name}", autocommit=True, connect_timeout=10
    )


# ---------------------------------------------------------------------------
# Profiling with py-spy


class PySpy:
    """py-spy record of each server while a storm runs (raw collapsed stacks), and the
    functions that took the most samples."""

    def __init__(self, args, servers, label: str):
        self.args = args
        self.servers = servers
        self.label = label
        self.processes = []
        self.paths = []

    def start(self) -> PySpy:
        if not self.args.py_spy:
            return self
        directory = Path(self.args.py_spy)
        directory.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            path = directory / f"{self.label}-server-{server.index}.txt"
            command = [
                self.args.py_spy_bin,
                "record",
                "--pid",
                str(server.process.pid),
                "--rate",
                str(self.args.py_spy_rate),
            ]
            command += ["--format", "raw", "--threads", "--nonblocking", "--duration", "900", "-o", str(path)]
            if not self.args.py_spy_wall:
                command.append("--gil")  # only the thread holding the GIL: where the CPU goes
            self.processes.append(
                subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
                )
            )
            self.paths.append(path)
        return self

    def stop(self) -> dict | None:
        if not self.processes:
            return None
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        return {str(path): summarize_collapsed(path) for path in self.paths}


def summarize_collapsed(path: Path, top: int = 15) -> dict:
    """Self and inclusive samples per function from py-spy's raw (collapsed) output."""
    self_samples, inclusive, project, total = {}, {}, {}, 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"error": "no output"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        count = int(count)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith("thread ")]
        if not frames:
            continue
        leaf = _short(frames[-1])
        self_samples[leaf] = self_samples.get(leaf, 0) + count
        for name in {_short(f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
            if name.rpartition("(")[2].split("/")[0] in PROJECT_PACKAGES:
                project[name] = project.get(name, 0) + count
    if not total:
        return {"samples": 0}

    def share(table):
        return [[name, round(100.0 * n / total, 1)] for name, n in sorted(table.items(), key=lambda x: -x[1])[:top]]

    return {
        "samples": total,
        "self_percent": share(self_samples),
        "project_inclusive_percent": share(project),
        "inclusive_percent": share(inclusive),
    }


def _short(frame: str) -> str:
    """'function (path/to/module.py:12)' -> 'function (module.py)'."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    return f"{name} ({'/'.join(parts[-2:])})" if parts else name


# ---------------------------------------------------------------------------
# Storm helpers


def summary_s(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 3) if values else None,
        "p99": round(percentile(values, 99), 3) if values else None,
        "max": round(values[-1], 3) if values else None,
    }


class LoopLag:
    """How late this client's event loop wakes up (a starved or overloaded client shows here)."""

    def __init__(self, step: float = 0.1):
        self.step = step
        self.max_s = 0.0
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.step)
            self.max_s = max(self.max_s, time.monotonic() - before - self.step)

    def start(self) -> LoopLag:
        self.task = asyncio.create_task(self._run())
        return self

    def stop(self) -> float:
        if self.task is not None:
            self.task.cancel()
        return round(self.max_s * 1000, 1)


async def progress(label: str, devices: list[Device], stop: asyncio.Event, started: float, what: str = "live") -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 5.0)
        except TimeoutError:
            live = sum(1 for d in devices if d.live)
            complete = sum(1 for d in devices if d.complete_at is not None)
            extra = f", {complete} complete" if what == "complete" else ""
            log(f"[{label}] {time.monotonic() - started:.0f}s: {live}/{len(devices)} live{extra}")


async def storm(label: str, devices: list[Device], args, *, cursors: bool, tally: Tally) -> dict:
    """Start every device's connect+sync at once; wait until all are live (or the deadline)."""
    started = time.monotonic()
    deadline = started + args.storm_timeout
    tally.devices += len(devices)
    stop = asyncio.Event()
    reporter = asyncio.create_task(progress(label, devices, stop, started))
    tasks = [
        asyncio.create_task(d.connect_live(tally, deadline, timeout=args.handshake_timeout, cursors=cursors))
        for d in devices
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.storm_timeout + 60)
    except TimeoutError:
        for task in tasks:
            task.cancel()
    stop.set()
    await reporter
    live = [d for d in devices if d.live_at is not None and d.live]
    times = [d.live_at - started for d in live]
    all_live = len(live) == len(devices)
    log(f"[{label}] {len(live)}/{len(devices)} live in {max(times) if times else 0:.2f}s")
    return {
        "devices": len(devices),
        "live": len(live),
        "all_live": all_live,
        "all_live_s": round(max(times), 3) if all_live else None,
        "time_to_live_s": summary_s(times),
        "started_monotonic": started,
    }


async def settle(env: Environment, timeout: float, *, idle_cores: float = 0.1, step: float = 0.5) -> float:
    """Until the servers are idle (two steps under `idle_cores` together), at most `timeout`."""
    started = time.monotonic()
    quiet = 0
    last = sum(s.cpu_seconds() or 0.0 for s in env.servers)
    while time.monotonic() - started < timeout:
        await asyncio.sleep(step)
        now = sum(s.cpu_seconds() or 0.0 for s in env.servers)
        quiet = quiet + 1 if (now - last) / step < idle_cores else 0
        last = now
        if quiet >= 2:
            break
    else:
        log(f"servers still busy after {timeout:g}s")
    return round(time.monotonic() - started, 2)


async def connect_senders(env: Environment, args, tally: Tally) -> list[Sender]:
    senders = env.senders()
    deadline = time.monotonic() + 60
    for sender in senders:
        await sender.connect_sender(tally, deadline, args.handshake_timeout)
    return senders


async def steady_flow(senders: list[Sender], conversations: list[int], rate: float, stop: asyncio.Event, tag: str):
    """Open loop: message k at start + k/rate, to conversation k mod C, from sender k mod S."""
    started = time.perf_counter()
    k = 0
    max_lag = 0.0
    while not stop.is_set():
        scheduled = started + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                break
            except TimeoutError:
                pass
        max_lag = max(max_lag, time.perf_counter() - scheduled)
        await senders[k % len(senders)].send_message(conversations[k % len(conversations)], tag)
        k += 1
    return {"sent": k, "rate": rate, "max_send_lag_ms": round(max_lag * 1000, 1)}


def sender_errors(senders: list[Sender]) -> dict:
    """Final errors by code over all senders, and how many sends were retried after rate_limited."""
    out: dict = {}
    for sender in senders:
        for code, count in sender.errors.items():
            out[code] = out.get(code, 0) + count
    retried = sum(s.retries for s in senders)
    if retried:
        out["rate_limited_then_retried"] = retried
    return out


async def wait_acks(senders: list[Sender], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(s.outstanding() for s in senders):
            return True
        await asyncio.sleep(0.05)
    return False


def acked_last_seqs(senders: list[Sender], base: dict[int, int], before: float | None = None) -> dict[int, int]:
    """Per conversation, the highest acknowledged seq (of the sends made before `before`)."""
    last = dict(base)
    for sender in senders:
        for conversation, seq, _, sent in sender.acked:
            if before is not None and sent >= before:
                continue
            if conversation is not None and seq is not None and seq > last.get(conversation, 0):
                last[conversation] = seq
    return last


def ack_latency(senders: list[Sender], since: float = 0.0) -> dict:
    values = sorted((ack - sent) * 1000 for s in senders for _, _, ack, sent in s.acked if sent >= since)
    return {
        "acked": len(values),
        "p50_ms": round(percentile(values, 50), 1) if values else None,
        "p99_ms": round(percentile(values, 99), 1) if values else None,
        "max_ms": round(values[-1], 1) if values else None,
    }


async def drain(devices: list[Device], last_seqs: dict[int, int], timeout: float, idle: float = 5.0) -> dict:
    """Wait until every device has every change up to `last_seqs`, or nothing moved for `idle` s."""
    started = time.monotonic()
    missing = sum(d.missing(last_seqs) for d in devices)
    moved = started
    while missing and time.monotonic() - started < timeout:
        await asyncio.sleep(0.1)
        now = sum(d.missing(last_seqs) for d in devices)
        if now != missing:
            moved = time.monotonic()
        missing = now
        if time.monotonic() - moved > idle:
            log(f"nothing arrived for {idle:g}s: {missing} changes missing")
            break
    return {"missing": missing, "drain_s": round(time.monotonic() - started, 2)}


def exactness(devices: list[Device], last_seqs: dict[int, int], tally: Tally) -> dict:
    """Over every (device, conversation): every seq 1..last exactly once, in order."""
    lost = sum(d.missing(last_seqs) for d in devices)
    incomplete = sum(1 for d in devices if d.missing(last_seqs))
    return {
        "lost": lost,
        "devices_missing_something": incomplete,
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "resets": tally.resets,
    }


def acked_lost(senders: list[Sender], devices: list[Device], members: dict[int, list[int]]) -> int:
    """(device, message) pairs whose message was acknowledged but the member device lacks."""
    by_index = {d.index: d for d in devices}
    lost = 0
    for sender in senders:
        for conversation, seq, _, _ in sender.acked:
            for i in members.get(conversation, ()):
                if i in by_index and by_index[i].cursors.get(conversation, 0) < seq:
                    lost += 1
    return lost


# ---------------------------------------------------------------------------
# Scenarios


async def scenario_connect_reconnect(env: Environment, args) -> dict:
    results = {}
    stop_heartbeats = asyncio.Event()
    sender_tally = Tally()
    senders = await connect_senders(env, args, sender_tally)
    initial = 1 if args.connect_cursors == "stored" else 0
    devices = env.devices(initial_cursor=initial)
    beat = asyncio.create_task(heartbeats([*devices, *senders], stop_heartbeats))
    try:
        # 1. connect
        results["background_busy_cores"] = await background_cores()
        results["machine_speed_ms"] = machine_speed_ms()
        results["loadavg_before"] = loadavg()
        tally = Tally()
        meter = Meter(env).start()
        spy = PySpy(args, env.servers, "connect").start()
        outcome = await storm("connect", devices, args, cursors=args.connect_cursors == "stored", tally=tally)
        cpu_storm = meter.stop()
        settle_meter = Meter(env).start()
        settle_s = await settle(env, args.settle_timeout)
        cpu_settle = settle_meter.stop()
        profile = spy.stop()
        outcome.pop("started_monotonic")
        results["connect"] = {
            **outcome,
            **tally.summary(),
            "settle_s": settle_s,
            "cpu_storm": cpu_storm,
            "cpu_settle": cpu_settle,
            "server_rss_kib": {f"server_{s.index}": status_kib(s.process.pid) for s in env.servers},
            "client_rss_kib": status_kib(os.getpid()),
        }
        if profile:
            results["connect"]["py_spy"] = profile
        if "reconnect" not in args.scenarios or not outcome["all_live"]:
            return results

        # 2. reconnect: drop everything at once
        log("[reconnect] dropping every device's socket")
        await asyncio.gather(*(d.drop() for d in devices))
        dropped_settle = await settle(env, args.settle_timeout)
        conversations = env.conversation_ids()
        base = {c: v["last_seq"] for c, v in ((int(k), v) for k, v in env.data["conversations"].items())}
        log(f"[reconnect] sending {args.behind} messages to each of {len(conversations)} conversations")
        backlog_started = time.monotonic()
        backlog_meter = Meter(env).start()
        for r in range(args.behind):
            for j, conversation in enumerate(conversations):
                while sum(s.outstanding() for s in senders) >= args.behind_window:
                    await asyncio.sleep(0.002)
                    if time.monotonic() - backlog_started > args.storm_timeout:
                        raise RuntimeError("the backlog could not be sent in time")
                await senders[(r + j) % len(senders)].send_message(conversation, "behind")
        acks_ok = await wait_acks(senders, 120)
        backlog_s = time.monotonic() - backlog_started
        backlog_cpu = backlog_meter.stop()
        targets = acked_last_seqs(senders, base)
        backlog_errors = sender_errors(senders)
        for sender in senders:  # the flow's errors are counted from here
            sender.errors, sender.retries = {}, 0
        log(f"[reconnect] backlog sent in {backlog_s:.1f}s (all acknowledged: {acks_ok}); waiting for idle servers")
        settle_before = await settle(env, args.settle_timeout)

        for d in devices:
            d.set_targets(targets)
        tally2 = Tally()
        flow_stop = asyncio.Event()
        flow_started = time.monotonic()
        flow = asyncio.create_task(steady_flow(senders, conversations, args.flow_rate, flow_stop, "flow"))
        meter = Meter(env).start()
        spy = PySpy(args, env.servers, "reconnect").start()
        complete_stop = asyncio.Event()
        started = time.monotonic()
        reporter = asyncio.create_task(progress("reconnect", devices, complete_stop, started, "complete"))
        outcome = await storm("reconnect", devices, args, cursors=True, tally=tally2)
        deadline = started + args.storm_timeout
        while time.monotonic() < deadline and any(d.complete_at is None for d in devices):
            await asyncio.sleep(0.05)
        complete_stop.set()
        await reporter
        cpu_storm = meter.stop()
        completes = [d.complete_at - started for d in devices if d.complete_at is not None]
        all_complete = len(completes) == len(devices)
        log(f"[reconnect] {len(completes)}/{len(devices)} complete in {max(completes) if completes else 0:.2f}s")
        await asyncio.sleep(2.0)  # a little more of the steady flow after the storm
        flow_stop.set()
        flow_result = await flow
        await wait_acks(senders, 30)
        profile = spy.stop()
        final = env.last_seqs_from_db()
        drained = await drain(devices, final, args.drain_timeout)
        await asyncio.sleep(0.5)  # late duplicates would be counted
        outcome.pop("started_monotonic")
        results["reconnect"] = {
            **outcome,
            "all_complete": all_complete,
            "all_live_and_complete_s": round(max(completes), 3) if all_complete else None,
            "time_to_complete_s": summary_s(completes),
            **exactness(devices, final, tally2),
            "acked_messages_lost": acked_lost(senders, devices, env.members()),
            **{k: v for k, v in tally2.summary().items() if k not in ("duplicates", "out_of_order", "resets")},
            "behind": args.behind,
            "backlog": {
                "messages": args.behind * len(conversations),
                "send_s": round(backlog_s, 2),
                "all_acknowledged": acks_ok,
                "errors": backlog_errors,
                "cpu": backlog_cpu,
            },
            "settle_after_drop_s": dropped_settle,
            "settle_before_storm_s": settle_before,
            "flow": {
                **flow_result,
                "ack_latency_during_storm": ack_latency(senders, since=flow_started),
                "errors": sender_errors(senders),
                "unacked": sum(s.outstanding() for s in senders),
            },
            "drain": drained,
            "cpu_storm": cpu_storm,
        }
        if profile:
            results["reconnect"]["py_spy"] = profile
        results["reconnect"]["loadavg_after"] = loadavg()
        return results
    finally:
        stop_heartbeats.set()
        await beat
        await asyncio.gather(*(d.drop() for d in devices), *(s.drop() for s in senders), return_exceptions=True)


async def scenario_outage(env: Environment, args) -> dict:
    stop_heartbeats = asyncio.Event()
    sender_tally = Tally()
    senders = await connect_senders(env, args, sender_tally)
    devices = env.devices()
    beat = asyncio.create_task(heartbeats([*devices, *senders], stop_heartbeats))
    try:
        result = {
            "background_busy_cores": await background_cores(),
            "machine_speed_ms": machine_speed_ms(),
            "loadavg_before": loadavg(),
        }
        tally = Tally()
        outcome = await storm("outage: connect", devices, args, cursors=True, tally=tally)
        result["connect_all_live_s"] = outcome["all_live_s"]
        result["connect_time_to_live_s"] = outcome["time_to_live_s"]
        result["connect_refused_4503"] = tally.refused_4503
        if not outcome["all_live"]:
            # Measure the outage on the devices that made it (and say how many did not).
            result["devices_not_live_before_outage"] = len(devices) - outcome["live"]
            log(f"[outage] only {outcome['live']} of {len(devices)} devices live: measuring with those")
            for d in devices:
                if not d.live:
                    await d.drop()
            devices = [d for d in devices if d.live]
            if not devices:
                return {**result, "error": "no device went live"}
        result["settle_s"] = await settle(env, args.settle_timeout)
        for d in devices:
            d.auto_reconnect = True  # the protocol: on any close we did not ask for, reconnect and sync
            d.deadline = time.monotonic() + args.storm_timeout + args.outage_lead + args.outage_seconds
        conversations = env.conversation_ids()
        base = {int(k): v["last_seq"] for k, v in env.data["conversations"].items()}
        meter = Meter(env).start()
        flow_stop = asyncio.Event()
        flow_started = time.monotonic()
        flow = asyncio.create_task(steady_flow(senders, conversations, args.outage_rate, flow_stop, "outage"))
        await asyncio.sleep(args.outage_lead)
        closed_before = len(tally.server_closed)
        log(f"[outage] killing redis-server (pid {env.redis.process.pid})")
        killed = time.monotonic()
        env.redis.kill()
        await asyncio.sleep(args.outage_seconds)
        log("[outage] restarting redis-server")
        await asyncio.to_thread(env.redis.start)
        back = time.monotonic()
        # Every message sent before Redis was back, once acknowledged, is what each device must have.
        acked_by = time.monotonic() + 30
        while time.monotonic() < acked_by and any(entry[1] < back for s in senders for entry in s.pending.values()):
            await asyncio.sleep(0.02)
        targets_known = time.monotonic()
        targets = acked_last_seqs(senders, base, before=back)
        for d in devices:
            d.set_targets(targets)
        stop = asyncio.Event()
        reporter = asyncio.create_task(progress("outage", devices, stop, back, "complete"))
        deadline = back + args.storm_timeout
        while time.monotonic() < deadline and any(d.complete_at is None for d in devices):
            await asyncio.sleep(0.05)
        stop.set()
        await reporter
        completes = [d.complete_at - back for d in devices if d.complete_at is not None]
        all_complete = len(completes) == len(devices)
        log(
            f"[outage] {len(completes)}/{len(devices)} devices have every message {max(completes or [0]):.2f}s after Redis is back"
        )
        remaining = args.outage_tail - (time.monotonic() - back)
        if remaining > 0:
            await asyncio.sleep(remaining)
        flow_stop.set()
        flow_result = await flow
        await wait_acks(senders, 30)
        cpu = meter.stop()
        final = env.last_seqs_from_db()
        drained = await drain(devices, final, args.drain_timeout)
        await asyncio.sleep(0.5)
        server_closed = [c for c in tally.server_closed[closed_before:]]
        result.update(
            {
                "devices": len(devices),
                "outage_s": round(back - killed, 2),
                "connections_closed_by_server": len(server_closed) + len(sender_tally.server_closed),
                "server_close_codes": storm_client._codes(server_closed + sender_tally.server_closed),
                "reconnects": tally.reconnects,
                "acked_messages_lost": acked_lost(senders, devices, env.members()),
                "all_complete": all_complete,
                "redis_back_to_all_complete_s": round(max(completes), 3) if all_complete else None,
                "redis_back_to_complete_s": summary_s(completes),
                "targets_known_s": round(targets_known - back, 3),
                **exactness(devices, final, tally),
                "flow": {
                    **flow_result,
                    "ack_latency": ack_latency(senders, since=flow_started),
                    "ack_latency_during_outage": _ack_window(senders, killed, back),
                    "errors": sender_errors(senders),
                    "unacked": sum(s.outstanding() for s in senders),
                },
                "drain": drained,
                "cpu": cpu,
                "loadavg_after": loadavg(),
            }
        )
        return result
    finally:
        stop_heartbeats.set()
        await beat
        await asyncio.gather(*(d.drop() for d in devices), *(s.drop() for s in senders), return_exceptions=True)


def _ack_window(senders, start: float, end: float) -> dict:
    values = sorted((ack - sent) * 1000 for s in senders for _, _, ack, sent in s.acked if start <= sent < end)
    return {
        "acked": len(values),
        "p50_ms": round(percentile(values, 50), 1) if values else None,
        "max_ms": round(values[-1], 1) if values else None,
    }


async def idle_cpu(server, seconds: float = 10.0) -> float | None:
    """Cores the server uses with its connections idle (pings and periodic upkeep only)."""
    before = server.cpu_seconds()
    await asyncio.sleep(seconds)
    after = server.cpu_seconds()
    return None if before is None or after is None else round((after - before) / seconds, 3)


async def connect_gated(devices: list[Device], args, tally: Tally, label: str) -> dict:
    gate = asyncio.Semaphore(args.idle_concurrency)
    started = time.monotonic()
    deadline = started + args.storm_timeout

    tally.devices += len(devices)

    async def one(device):
        async with gate:
            await device.connect_live(tally, deadline, timeout=args.handshake_timeout)

    stop = asyncio.Event()
    reporter = asyncio.create_task(progress(label, devices, stop, started))
    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(d) for d in devices), return_exceptions=True), args.storm_timeout + 60
        )
    except TimeoutError:
        pass
    stop.set()
    await reporter
    live = sum(1 for d in devices if d.live)
    return {"live": live, "connect_s": round(time.monotonic() - started, 2)}


async def scenario_idle_product(env: Environment, args) -> dict:
    server = env.servers[0]
    pid = server.process.pid
    devices = env.devices()
    stop_heartbeats = asyncio.Event()
    beat = asyncio.create_task(heartbeats(devices, stop_heartbeats))
    tally = Tally()
    try:
        # Warm up: the first connection starts the hub, the pools, the lazy imports.
        warm = devices[0]
        await warm.connect_live(tally, time.monotonic() + 60, timeout=args.handshake_timeout)
        await warm.close()
        await settle(env, 30)
        await asyncio.sleep(1.0)
        before = status_kib(pid)
        cpu_before = server.cpu_seconds()
        log(f"[idle] product server RSS before: {before} KiB; connecting {len(devices) - 1} devices")
        outcome = await connect_gated(devices[1:], args, tally, "idle product")
        settle_s = await settle(env, args.settle_timeout)
        await asyncio.sleep(2.0)
        after = status_kib(pid)
        count = sum(1 for d in devices[1:] if d.live)
        idle = await idle_cpu(server)
        log(f"[idle] product server RSS after {count} connections: {after} KiB")
        return {
            "connections": count,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_peak_kib": status_kib(pid, "VmHWM"),
            "kib_per_connection": round((after - before) / count, 1) if count and after and before else None,
            "connect_s": outcome["connect_s"],
            "settle_s": settle_s,
            "server_cpu_s": round((server.cpu_seconds() or 0) - (cpu_before or 0), 2),
            "idle_server_cores": idle,
            "client_rss_kib": status_kib(os.getpid()),
            **{k: v for k, v in tally.summary().items() if k in ("handshake_failures", "refused_4503", "gave_up")},
            "presence_frames_received": tally.presence_frames,
        }
    finally:
        stop_heartbeats.set()
        await beat
        await asyncio.gather(*(d.drop() for d in devices), return_exceptions=True)


class ChatSocket(Device):
    """A socket of the tutorial chat: open = in the room; no protocol, no heartbeat needed."""

    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws/chat/idle/"

    def headers(self) -> dict:
        return {"Origin": f"http://{HOST}:{self.port}"}  # the tutorial's AllowedHostsOriginValidator

    async def _open(self, timeout: float, **options) -> None:
        """A plain `websockets` socket with the devices' options: the tutorial chat
        is not the product's protocol (no token, no hello)."""
        self.closing = False
        self.ws = await websockets.connect(
            self.url(),
            additional_headers=self.headers(),
            open_timeout=timeout,
            **storm_client.CONNECT_OPTIONS,
            **options,
        )

    async def connect_live(self, tally, deadline, *, timeout, cursors=True):
        self.tally = tally
        attempt = 0
        while time.monotonic() < deadline:
            tally.attempts += 1
            try:
                await self._open(timeout)
                self.reader = asyncio.create_task(self._read())
                self.live = True
                return True
            except Exception as error:  # noqa: BLE001
                tally.count(tally.handshake_failures, storm_client._cause(error))
                await asyncio.sleep(storm_client.backoff(attempt))
                attempt += 1
        tally.gave_up += 1
        return False


async def scenario_idle_baseline(servers, args, redis: PrivateRedis | None) -> dict:
    server = servers[0]
    pid = server.process.pid
    sockets = [ChatSocket(i, "", server.port, []) for i in range(args.idle_connections + 1)]
    tally = Tally()

    class Probe:
        pass

    probe = Probe()
    probe.servers = servers
    try:
        warm = sockets[0]
        await warm.connect_live(tally, time.monotonic() + 60, timeout=args.handshake_timeout)
        await warm.close()
        await settle(probe, 30)
        await asyncio.sleep(1.0)
        before = status_kib(pid)
        cpu_before = server.cpu_seconds()
        log(f"[idle] baseline server RSS before: {before} KiB; connecting {len(sockets) - 1} sockets")
        outcome = await connect_gated(sockets[1:], args, tally, "idle baseline")
        settle_s = await settle(probe, args.settle_timeout)
        await asyncio.sleep(2.0)
        after = status_kib(pid)
        count = sum(1 for s in sockets[1:] if s.live)
        idle = await idle_cpu(server)
        log(f"[idle] baseline server RSS after {count} connections: {after} KiB")
        return {
            "connections": count,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_peak_kib": status_kib(pid, "VmHWM"),
            "kib_per_connection": round((after - before) / count, 1) if count and after and before else None,
            "connect_s": outcome["connect_s"],
            "settle_s": settle_s,
            "server_cpu_s": round((server.cpu_seconds() or 0) - (cpu_before or 0), 2),
            "idle_server_cores": idle,
            **{k: v for k, v in tally.summary().items() if k in ("handshake_failures", "gave_up")},
        }
    finally:
        await asyncio.gather(*(s.drop() for s in sockets), return_exceptions=True)


# ---------------------------------------------------------------------------
# Main


def run_async(coroutine):
    """asyncio.run, where SIGTERM/SIGHUP/SIGINT cancel the scenario (so its clean-up runs)
    instead of raising inside whatever callback the loop happened to be running."""

    async def guarded():
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        for signum in signals:
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await coroutine
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        raise SystemExit("interrupted by a signal") from None


def run_connect_reconnect(args) -> dict:
    env = Environment(args, users=args.devices, processes=args.processes, name="connect")
    try:
        env.open(private_redis=False)
        env.start_servers()
        out = run_async(scenario_connect_reconnect(env, args))
        connect = {
            "setup": {**env.data["timings"], **env.data["counts"]},
            "server_settings": env.data["settings"],
            "server_env": env.recorded_env(),
            "background_busy_cores": out.pop("background_busy_cores", None),
            "loadavg_before": out.pop("loadavg_before", None),
            **out.pop("connect", {}),
        }
        return {"connect": connect, **out}
    finally:
        env.close()


def run_outage(args) -> dict:
    env = Environment(args, users=args.devices, processes=args.processes, name="redis-outage")
    try:
        env.open(private_redis=True)
        env.start_servers()
        out = run_async(scenario_outage(env, args))
        return {
            "setup": {**env.data["timings"], **env.data["counts"]},
            "server_env": env.recorded_env(),
            **out,
        }
    finally:
        env.close()


def run_idle(args) -> dict:
    # One more user than connections: the first device only warms the server up.
    env = Environment(args, users=args.idle_connections + 1, processes=1, name="idle-memory")
    result = {}
    try:
        env.open(private_redis=False)
        env.start_servers(1)
        result["background_busy_cores"] = run_async(background_cores())
        result["machine_speed_ms"] = machine_speed_ms()
        result["product"] = run_async(scenario_idle_product(env, args))
        result["setup"] = {**env.data["timings"], **env.data["counts"]}
        result["server_env"] = env.recorded_env()
    finally:
        env.close()
    if args.no_baseline:
        return result
    redis = None
    servers: list = []
    try:
        if args.shared_redis:
            url = f"redis://{HOST}:6379/10"
        else:
            redis = PrivateRedis(args.redis_server)
            redis.start()
            url = f"redis://{HOST}:{redis.port}/0"
        env_vars = {"DJANGO_SETTINGS_MODULE": "bench.baseline_app.settings", "REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
        servers.extend(start_servers(1, "bench.baseline_app.asgi:application", env_vars, args))
        result["baseline_channels_chat"] = run_async(scenario_idle_baseline(servers, args, redis))
        result["baseline_channels_chat"]["code"] = {"baseline_app_digest": source_digest(BENCH / "baseline_app")}
    finally:
        stop_servers(servers)
        if redis is not None:
            redis.stop()
    p, b = result["product"].get("kib_per_connection"), result["baseline_channels_chat"].get("kib_per_connection")
    if p and b:
        result["product_to_baseline_ratio"] = round(p / b, 2)
    return result


def main() -> int:
    args = arguments()
    exit_on_signals()
    nofile = raise_nofile()
    need = max(args.idle_connections if "idle-memory" in args.scenarios else 0, args.devices) + 200
    if nofile[0] < need:
        log(f"warning: RLIMIT_NOFILE is {nofile[0]}, below the {need} file descriptors this run may need")
    started = time.time()
    result = {
        "config": {
            "benchmark": "storm",
            "scenarios": list(args.scenarios),
            "devices": args.devices,
            "processes": args.processes,
            "group_size": args.group_size,
            "groups_per_user": args.groups_per_user,
            "room_size": args.room_size,
            "connect_cursors": args.connect_cursors,
            "senders": args.senders,
            "behind": args.behind,
            "flow_rate": args.flow_rate,
            "outage_rate": args.outage_rate,
            "outage_seconds": args.outage_seconds,
            "idle_connections": args.idle_connections,
            "idle_concurrency": args.idle_concurrency,
            "handshake_timeout": args.handshake_timeout,
            "storm_timeout": args.storm_timeout,
            "redis": "shared 127.0.0.1:6379" if args.shared_redis else "private redis-server per scenario",
            "code": code_identity(args.project),
        },
        "machine": {
            "cores": os.cpu_count(),
            "loadavg_at_start": loadavg(),
            "rlimit_nofile": list(nofile),
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    }
    if args.commit_hash:
        result["config"]["code"] = {**result["config"]["code"], "commit": args.commit_hash, "project": "git archive"}
    postgres_started = product_bench.postmaster_started(args)
    servers_ref: list = []
    failed = False
    with Watchdog(args.time_limit, servers_ref):
        try:
            for name, runner in (
                ("connect", run_connect_reconnect),
                ("redis-outage", run_outage),
                ("idle-memory", run_idle),
            ):
                if name not in args.scenarios:
                    continue
                log(f"=== scenario {name}")
                try:
                    out = runner(args)
                except Exception as error:  # noqa: BLE001 (one scenario failing does not lose the others)
                    log(f"scenario {name} failed: {type(error).__name__}: {error}")
                    out = {"error": f"{type(error).__name__}: {error}"}
                    failed = True
                if name == "connect" and "error" not in out:
                    result.update(out)  # "connect", and "reconnect" when it ran
                else:
                    result[name] = out
        finally:
            if args.commit_hash:
                shutil.rmtree(args.project, ignore_errors=True)
    result["machine"]["loadavg_at_end"] = loadavg()
    result["postgres_restarted_during_run"] = product_bench.postmaster_started(args) != postgres_started
    result["wall_s"] = round(time.time() - started, 1)
    text = json.dumps(result, default=str)
    print(text, flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
