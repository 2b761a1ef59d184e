"""Load benchmark of the realtime_sync WebSocket gateway (the real server, end to end).

    .venv/bin/python bench/run.py [--members 100] [--senders 10] [--rate 50] [--duration 10] [--processes 1]

What it does, every run from scratch:
  1. drops and recreates its own PostgreSQL database (default `realtime_bench`) and
     flushes its own Redis db index (default 9); runs the migrations;
  2. creates --members users with one device each (devices.services.issue_device) and
     puts them all in ONE group conversation (conversations.services.create_conversation);
  3. starts --processes Daphne processes (`python -m daphne ... realtime_sync.asgi:application`)
     on free ports of 127.0.0.1, devices spread round-robin over them;
  4. connects every device (the Python client's `Connection`, clients/python), waits
     for `hello`, sends `sync` with the conversation's current last_seq as cursor and
     waits for its `ok`; then the load generator's own reader takes the socket over;
  5. the first --senders devices send `send` frames on an open-loop schedule, together
     --rate messages/s: --warmup seconds not measured, then --duration seconds measured.
     Each body carries the send time (time.time_ns());
  6. every device (the sender's own included: it is a member device and gets the
     `message.created` event like the others) records receive time - send time; each
     sender records send -> `ok` time;
  7. waits (at most --drain-timeout) for every delivery, then prints ONE JSON object.

Progress goes to stderr. The servers are always stopped (SIGTERM, then SIGKILL), and
the database and Redis db are dropped/flushed at the end unless --keep-db.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from realtime_sync_client import Connection

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
from loadgen import (  # noqa: E402
    BENCH,
    CONNECT_TIMEOUT,
    HOST,
    ROOT,
    Protocol,
    RunFailed,
    Watchdog,
    check_arguments,
    common_arguments,
    config_of,
    conversation_layout,
    device_specs,
    emit,
    exit_on_signals,
    flush_redis,
    log,
    process_cpu_seconds,
    redis_cpu_seconds,
    redis_url,
    run_load,
    start_servers,
    stop_servers,
)

DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class GatewayProtocol(Protocol):
    name = "realtime_sync"
    heartbeat_interval = 20.0  # replaced by the hello's heartbeat_interval

    def __init__(self, conversations: list[tuple[int, int]]):
        """(conversation id, last_seq) per conversation of the layout: a device follows
        its own conversation from that cursor on and sends to it."""
        self.conversations = conversations
        self.conversation_ids = {conversation_id for conversation_id, _ in conversations}

    def url(self, port, device):
        return f"ws://{HOST}:{port}/ws/v1/"

    async def open(self, client):
        """Through the Python client's `Connection` (bearer token, `hello`, the `sync`
        request); then it detaches and the load generator's reader reads the socket."""
        connection = Connection(
            self.url(client.port, client.spec),
            token=client.spec.token,
            max_size=loadgen.MAX_SIZE,
            open_timeout=loadgen.HANDSHAKE_TIMEOUT,  # the opening handshake, then hello
            connect_options=loadgen.CONNECT_OPTIONS,
        )
        try:
            hello = await connection.open()
        finally:
            client.ws = connection.ws  # open (or not): closed with the client
        self.heartbeat_interval = float(hello.get("heartbeat_interval") or 20.0)
        conversation_id, cursor = self.conversations[client.spec.conversation]
        reply = await asyncio.wait_for(
            connection.request("sync", cursors={str(conversation_id): cursor}), loadgen.HANDSHAKE_TIMEOUT
        )
        if reply.get("type") != "ok":
            raise RuntimeError(f"device {client.spec.index}: sync failed: {reply}")
        return connection.ws, await connection.detach()

    def send_frame(self, device, ref, client_msg_id, body):
        return json.dumps(
            {
                "type": "send",
                "ref": ref,
                "conversation_id": self.conversations[device.conversation][0],
                "client_msg_id": client_msg_id,
                "body": body,
            }
        )

    def classify(self, frame):
        kind = frame.get("type")
        if kind == "event":
            if frame.get("kind") == "message.created" and frame.get("conversation_id") in self.conversation_ids:
                return ("delivery", frame["payload"]["body"], frame.get("seq"))
            return None
        if kind == "ok":
            return ("ack", frame.get("ref"))
        if kind == "error":
            details = frame.get("details") or {}
            return ("error", frame.get("ref"), frame.get("code"), details.get("retry_after"))
        return None

    def heartbeat_frame(self, ref):
        return json.dumps({"type": "ping", "ref": ref})


def parser():
    p = common_arguments(__doc__.split("\n\n")[0], redis_db=9)
    p.add_argument("--db-name", default="realtime_bench", help="PostgreSQL database to (re)create")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--db-pool-max", type=int, default=10, help="DB_POOL_MAX_SIZE per server process")
    p.add_argument(
        "--project",
        default=str(ROOT),
        help="the project tree to run (default: the one holding bench/); e.g. an export of a commit",
    )
    p.add_argument(
        "--commit",
        help="run this commit of the project instead (exported with `git archive` to a temporary directory)",
    )
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="run the servers through bench/diag_server.py: timings of the send path in the result",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        help="with --diagnose: sys.setswitchinterval(SECONDS) in the servers (an experiment; default 0.005)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the servers, over the benchmark's own (repeatable); e.g. GC_GEN0_THRESHOLD=50000",
    )
    p.add_argument("--keep-db", action="store_true", help="leave the database and Redis data after the run")
    return p


def arguments():
    args = parser().parse_args()
    check_arguments(args)
    if not DB_NAME_RE.match(args.db_name) or args.db_name in {"postgres", "template0", "template1"}:
        sys.exit("--db-name must be a plain lower-case identifier and not a system database")
    args.project = Path(args.project).resolve()
    args.commit_hash = None
    if args.commit:
        if args.project != ROOT:
            sys.exit("--commit and --project exclude each other")
        args.project, args.commit_hash = export_commit(args.commit)
    if not (args.project / "realtime_sync" / "asgi.py").exists():
        if args.commit_hash:
            shutil.rmtree(args.project, ignore_errors=True)
        sys.exit(f"{args.commit or args.project} has no realtime_sync/asgi.py")
    return args


def export_commit(rev: str) -> tuple[Path, str]:
    """`git archive REV` into a fresh temporary directory (the repository is only read)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", "--short", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    if commit.returncode != 0:
        sys.exit(f"--commit {rev}: {commit.stderr.strip()}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit.stdout.strip()], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        sys.exit(f"git archive failed: {archive.stderr.decode(errors='replace')}")
    target = Path(tempfile.mkdtemp(prefix="realtime_bench_src_"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    log(f"exported commit {commit.stdout.strip()} to {target}")
    return target, commit.stdout.strip()


def pg_url(args, name: str) -> str:
    return f"postgres://{args.pg_user}@{HOST}:{args.pg_port}/{name}"


def admin_connection(args):
    import psycopg

    return psycopg.connect(
        f"postgresql://{args.pg_user}@{HOST}:{args.pg_port}/postgres", autocommit=True, connect_timeout=10
    )


def recreate_database(args) -> None:
    from psycopg import sql

    with admin_connection(args) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db_name)))


def drop_database(args) -> None:
    from psycopg import sql

    with admin_connection(args) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))


# One key per run of this script: the servers run as in production (DEBUG off).
SECRET_KEY = secrets.token_urlsafe(50)

# The product's request-rate limits, lifted where a benchmark's load would otherwise
# meet them: clients standing for many users, or a stalled server's backlog being
# refused and retried, would measure the limiter instead of the server.
UNLIMITED_REQUEST_RATES = {
    "WS_RATE_PER_USER": "100000",
    "WS_RATE_BURST_PER_USER": "100000",
    "WS_RATE_PER_CONNECTION": "100000",
    "WS_RATE_BURST_PER_CONNECTION": "100000",
}


def server_env(args) -> dict:
    """What a deployment would set: production settings (DEBUG off, a secret
    key, allowed hosts), the benchmark's database and Redis, quiet logs."""
    env = {
        "DJANGO_SETTINGS_MODULE": "realtime_sync.settings",
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": pg_url(args, args.db_name),
        "REDIS_URL": redis_url(args),
        "DB_POOL_MIN_SIZE": "2",
        "DB_POOL_MAX_SIZE": str(args.db_pool_max),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    if args.capacity:
        env["CHANNEL_LAYER_CAPACITY"] = str(args.capacity)
    if args.scenario == "many":
        # Every device sends: 1 msg/s each at 1,000 msgs/s over 1,000 devices, under the
        # limits (30/s per connection, 60/s per user); a smaller layout at a higher rate
        # would not be. Lifted, so that no run measures the limiter instead of the server.
        env.update(UNLIMITED_REQUEST_RATES)
    for setting in args.server_env:
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def prepare(args) -> tuple[list[list[int]], list[tuple[int, int]], list[str]]:
    """The database, the users, their devices and the conversations of the layout:
    (the layout, (conversation id, last_seq) per conversation of it, the tokens)."""
    log(f"recreating database {args.db_name}, flushing Redis db {args.redis_db}")
    recreate_database(args)
    flush_redis(args)
    os.environ.update(server_env(args))
    os.environ.update(DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="4")  # this process only sets up
    sys.path.insert(0, str(args.project))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from conversations.models import Conversation
    from conversations.services import create_conversation
    from devices.services import issue_device

    call_command("migrate", verbosity=0, interactive=False)
    User = get_user_model()
    users = [User.objects.create_user(f"bench{i:04d}") for i in range(args.members)]  # no password: no hashing
    tokens = [issue_device(user=user, name=f"bench device {i}").token for i, user in enumerate(users)]
    layout = conversation_layout(args)
    conversations = []
    for number, members in enumerate(layout):
        creator, *others = (users[i] for i in members)
        if len(layout) > 1 and len(members) == 2:  # two people: a direct conversation, as apps make them
            kind, title = "direct", ""
        else:
            kind, title = "group", "bench" if len(layout) == 1 else f"bench {number}"
        conversation, _ = create_conversation(
            creator=creator, kind=kind, title=title, member_ids=[u.pk for u in others]
        )
        conversations.append((conversation.pk, Conversation.objects.get(pk=conversation.pk).last_seq))
    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
    where = f"conversation {conversations[0][0]}" if len(layout) == 1 else f"{len(layout)} conversations"
    log(f"{len(users)} users with a device each in {where} (last_seq {conversations[0][1]})")
    return layout, conversations, tokens


def postmaster_started(args) -> str | None:
    """When the PostgreSQL server last started: a change during a run means it was
    restarted under the benchmark (by someone else), and the run is not comparable."""
    try:
        with admin_connection(args) as conn:
            return conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()[0]
    except Exception:
        return None


def postgres_backend_pids(args) -> list[int]:
    with admin_connection(args) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [args.db_name]).fetchall()
    return [r[0] for r in rows]


class PostgresCpu:
    """CPU of the PostgreSQL backends serving our database. The first reading is the
    baseline (0); backends that connect later count from zero, ones that exit are lost."""

    def __init__(self, args):
        self.args = args
        self.base: dict[int, float] | None = None

    def read(self) -> float | None:
        try:
            pids = postgres_backend_pids(self.args)
        except Exception:
            return None
        now = {pid: cpu for pid in pids if (cpu := process_cpu_seconds(pid)) is not None}
        if self.base is None:
            self.base = now
            return 0.0
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in now.items())


def main() -> int:
    args = arguments()
    exit_on_signals()
    servers: list = []
    result = None
    budget = 120 + CONNECT_TIMEOUT + args.settle_timeout + args.warmup + args.duration + args.drain_timeout
    budget += 20 * args.processes
    with Watchdog(budget, servers):
        try:
            postgres_started = postmaster_started(args)
            layout, conversations, tokens = prepare(args)
            env = server_env(args)
            launcher = BENCH / "diag_server.py" if args.diagnose else None
            if args.diagnose and args.switch_interval:
                env["BENCH_SWITCH_INTERVAL"] = str(args.switch_interval)
            servers.extend(
                start_servers(
                    args.processes, "realtime_sync.asgi:application", env, args, cwd=args.project, launcher=launcher
                )
            )
            devices = device_specs(layout, tokens)
            postgres = PostgresCpu(args)
            probes = {
                "servers": lambda: sum(s.cpu_seconds() or 0.0 for s in servers),
                "postgres_backends": postgres.read,
                "redis_server_all_clients": lambda: redis_cpu_seconds(args),
            }
            started = time.time()
            protocol = GatewayProtocol(conversations)
            try:
                result = asyncio.run(run_load(protocol, devices, servers, args, cpu_probes=probes))
            except RunFailed as failure:
                log(f"run failed: {failure}")
                result = {"error": str(failure)}
            config = config_of(args, "realtime_sync", root=args.project, db_pool_max=args.db_pool_max)
            if args.server_env:
                config["server_env"] = args.server_env
            if args.commit_hash:
                config["code"] = {**config["code"], "commit": args.commit_hash, "project": "git archive"}
            result = {"config": config, **result, "wall_s": round(time.time() - started, 1)}
            result["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
            result["postgres_restarted_during_run"] = postmaster_started(args) != postgres_started
            if result["postgres_restarted_during_run"]:
                log("PostgreSQL was restarted during this run: its figures are not comparable")
        finally:
            stop_servers(servers)
            if args.diagnose and result is not None:
                result["server_diagnostics"] = [s.diagnostics() for s in servers]
            if not args.keep_db:
                try:
                    drop_database(args)
                    flush_redis(args)
                except Exception as error:  # the result stands; say what was left behind
                    log(f"clean-up failed: {error}")
            if args.commit_hash:
                shutil.rmtree(args.project, ignore_errors=True)
    emit(result, args)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
