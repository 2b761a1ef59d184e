"""What the two benchmark scripts share: server processes, the load, the figures.

Nothing here imports Django or the project; `run.py` (the product) and
`baseline_channels_chat.py` (the Channels tutorial chat) differ only in how they
prepare their server and in their `Protocol` (the URL, the handshake, the frames).

Everything targets 127.0.0.1 only. Every wait has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from machine_speed import machine_speed_ms

HOST = "127.0.0.1"  # the only host this benchmark ever connects to or binds
ROOT = Path(__file__).resolve().parent.parent  # the project (daphne's working directory)
BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECT_TIMEOUT = 300.0  # for all devices to connect and be following live
HANDSHAKE_TIMEOUT = 60.0  # for one device's first frame and each handshake reply
DRAIN_IDLE_SECONDS = 5.0  # stop waiting for deliveries once nothing arrived for this long
# How every device's socket is opened, product and baseline alike (websockets.connect options).
CONNECT_OPTIONS = {
    "compression": None,  # not offered: the same frames for both servers (bench/compression.py measures it)
    "proxy": None,  # never go through a proxy: 127.0.0.1 only
    "ping_interval": None,  # WebSocket-level pings do not count as heartbeats anyway
}
MAX_SIZE = 2**22
SCENARIOS = ("one", "many")


def log(*parts) -> None:
    """Progress goes to stderr; stdout carries only the result JSON."""
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Command line


def common_arguments(description: str, *, redis_db: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="one",
        help="one: every device in one conversation/room, the first --senders send (default: 100 devices, "
        "10 senders); many: the devices split over --conversations conversations/rooms of --min-size to "
        "--max-size members (see conversation_sizes), every device sending (default: 1,000 devices, 250)",
    )
    p.add_argument("--members", type=int, default=None, help="devices, one per user (default 100; many: 1,000)")
    p.add_argument("--senders", type=int, default=None, help="how many of those devices send (default 10; many: all)")
    p.add_argument("--conversations", type=int, default=None, help="many: conversations/rooms (default 250)")
    p.add_argument("--min-size", type=int, default=2, help="many: the smallest conversation (members)")
    p.add_argument("--max-size", type=int, default=50, help="many: the largest conversation (members)")
    p.add_argument("--layout-seed", type=int, default=1, help="many: seed of the conversation sizes and memberships")
    p.add_argument("--rate", type=float, default=50.0, help="aggregate messages per second, over all senders")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measured sending")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of sending at the same rate before measuring")
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        help="after connecting, wait (at most this long) until the servers are idle before sending",
    )
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait for the last deliveries")
    p.add_argument("--processes", type=int, default=1, help="server processes (devices spread round-robin)")
    p.add_argument("--connect-concurrency", type=int, default=20, help="devices connecting at the same time")
    p.add_argument(
        "--handshake-timeout",
        type=float,
        default=HANDSHAKE_TIMEOUT,
        help="seconds for one device to open, get its first frame and each handshake reply",
    )
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, default=redis_db, help="Redis db index, flushed at start and end")
    p.add_argument("--capacity", type=int, default=None, help="CHANNEL_LAYER_CAPACITY for the servers")
    p.add_argument("--profile", metavar="DIR", help="run each server under cProfile, write DIR/server-N.prof")
    p.add_argument("--output", metavar="FILE", help="also write the result JSON to FILE")
    p.add_argument("--keep-server-logs", action="store_true", help="keep bench/results/*.log")
    return p


def check_arguments(args) -> None:
    global HANDSHAKE_TIMEOUT
    HANDSHAKE_TIMEOUT = args.handshake_timeout
    many = args.scenario == "many"
    if args.members is None:
        args.members = 1000 if many else 100
    if args.senders is None:
        args.senders = args.members if many else 10
    if args.conversations is None:
        args.conversations = 250 if many else 1
    if args.members < 1 or not (1 <= args.senders <= args.members):
        sys.exit("need 1 <= senders <= members")
    if not many and args.conversations != 1:
        sys.exit("--conversations needs --scenario many")
    if many and not (
        2 <= args.min_size <= args.max_size
        and args.conversations * args.min_size <= args.members <= args.conversations * args.max_size
    ):
        sys.exit(
            "--scenario many needs 2 <= min-size <= max-size and conversations × min-size <= members <= × max-size"
        )
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.processes < 1:
        sys.exit("rate and duration must be > 0, warmup >= 0, processes >= 1")
    if not (1 <= args.redis_db <= 15):
        # db 0 is the product's documented default: never flush it.
        sys.exit("--redis-db must be 1..15 (it is flushed)")


def redis_url(args) -> str:
    return f"redis://{HOST}:{args.redis_port}/{args.redis_db}"


def flush_redis(args) -> None:
    import redis

    client = redis.Redis(host=HOST, port=args.redis_port, db=args.redis_db, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def redis_cpu_seconds(args) -> float | None:
    """CPU used by the whole Redis server so far (shared with anyone else using it)."""
    import redis

    try:
        client = redis.Redis(host=HOST, port=args.redis_port, db=args.redis_db, socket_timeout=5)
        info = client.info("cpu")
        client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None


# ---------------------------------------------------------------------------
# Who is in which conversation


def conversation_sizes(members: int, conversations: int, smallest: int, largest: int, seed: int) -> list[int]:
    """Seeded sizes of `conversations` conversations holding `members` devices in all.

    Many small and a few large: one conversation of `largest` members (fewer if the others
    could not all have `smallest`), the others drawn (random.Random(seed)) from
    P(size) ∝ size^-a over smallest..largest, with `a` chosen so that the distribution's
    mean is members / conversations; then, while the sum is off, one member at a time is
    added to (or taken from) a drawn conversation other than the first, within the
    bounds. With the defaults (1,000 in 250 of 2 to 50, seed 1,
    a = 2.47): 132 conversations of 2, 40 of 3, 24 of 4, 17 of 5, 11 of 6, 7 of 7, 9 of 8
    to 12, 9 of 13 to 29 and one of 50; every device sending alike, a message reaches
    9.57 devices on average (the sum of the squared sizes over 1,000).
    """
    values = list(range(smallest, largest + 1))
    target = members / conversations

    def mean(a: float) -> float:
        return sum(v * v**-a for v in values) / sum(v**-a for v in values)

    low, high = -10.0, 10.0  # mean() falls as `a` grows
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mean(middle) > target else (low, middle)
    weights = [v ** -((low + high) / 2) for v in values]
    rng = random.Random(seed)
    first = min(largest, members - (conversations - 1) * smallest)  # the largest, if the others can be small
    sizes = [first] + rng.choices(values, weights=weights, k=conversations - 1)
    while difference := sum(sizes) - members:
        i = rng.randrange(1, conversations) if conversations > 1 else 0
        if difference > 0 and sizes[i] > smallest:
            sizes[i] -= 1
        elif difference < 0 and sizes[i] < largest:
            sizes[i] += 1
    return sizes


def conversation_layout(args) -> list[list[int]]:
    """The device indices of each conversation (scenario one: all in one). Scenario many:
    the devices, shuffled with --layout-seed, cut in order into `conversation_sizes`."""
    if args.scenario != "many":
        return [list(range(args.members))]
    sizes = conversation_sizes(args.members, args.conversations, args.min_size, args.max_size, args.layout_seed)
    order = list(range(args.members))
    random.Random(args.layout_seed).shuffle(order)
    layout, start = [], 0
    for size in sizes:
        layout.append(sorted(order[start : start + size]))
        start += size
    return layout


def device_specs(layout: list[list[int]], tokens: list[str] | None = None) -> list[DeviceSpec]:
    """One DeviceSpec per device, knowing its conversation (its index in `layout`)."""
    specs = [DeviceSpec(i, tokens[i] if tokens else None) for i in range(sum(len(m) for m in layout))]
    for conversation, members in enumerate(layout):
        for i in members:
            specs[i].conversation = conversation
    return specs


def layout_summary(layout: list[list[int]]) -> dict:
    """For the result's config: how many conversations of each size, and the mean
    recipients of a message when every device sends alike."""
    sizes = sorted(len(m) for m in layout)
    histogram: dict[str, int] = {}
    for size in sizes:
        histogram[str(size)] = histogram.get(str(size), 0) + 1
    return {
        "conversations": len(sizes),
        "sizes": histogram,
        "mean_recipients_per_message": round(sum(s * s for s in sizes) / sum(sizes), 2),
    }


# ---------------------------------------------------------------------------
# CPU accounting from /proc


def process_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (everyone's work, not only ours)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


# ---------------------------------------------------------------------------
# Server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the benchmark process dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    """One Daphne process on 127.0.0.1 and a free port."""

    def __init__(
        self,
        index: int,
        application: str,
        env: dict,
        *,
        cwd: Path,
        profile_dir: str | None,
        keep_log: bool,
        launcher: Path | None = None,
    ):
        self.index = index
        self.cwd = cwd
        self.launcher = launcher  # a script standing in for `-m daphne` (bench/diag_server.py)
        self.diag_path: Path | None = None
        self.application = application
        self.env = env
        self.profile_path = Path(profile_dir).resolve() / f"server-{index}.prof" if profile_dir else None
        self.keep_log = keep_log
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> Server:
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            if self._start_once(timeout):
                return self
            log(
                f"server {self.index} did not start on port {self.port} (attempt {attempt + 1}):\n{self.output()[-2000:]}"
            )
            self.stop()
        raise RuntimeError("a server process did not start; see the log above")

    def _start_once(self, timeout: float) -> bool:
        results = BENCH / "results"
        results.mkdir(exist_ok=True)
        self.log_path = results / f"server-{os.getpid()}-{self.index}-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop(); outlives this call)
        command = [sys.executable]
        if self.profile_path:
            self.profile_path.parent.mkdir(parents=True, exist_ok=True)
            command += ["-m", "cProfile", "-o", str(self.profile_path)]
        env = {**os.environ, **self.env}
        if self.launcher:
            self.diag_path = results / f"diag-{os.getpid()}-{self.index}.json"
            self.diag_path.unlink(missing_ok=True)
            env["BENCH_DIAG_OUT"] = str(self.diag_path)
            command += [str(self.launcher)]
        else:
            command += ["-m", "daphne"]
        command += ["-b", HOST, "-p", str(self.port), self.application]
        self.process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only us; we stop the servers
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def output(self) -> str:
        try:
            return self.log_path.read_text() if self.log_path else ""
        except OSError:
            return ""

    def diagnostics(self) -> dict | None:
        """What bench/diag_server.py wrote at exit (after stop())."""
        if not self.diag_path or not self.diag_path.exists():
            return None
        try:
            data = json.loads(self.diag_path.read_text())
        except (OSError, ValueError):
            return None
        self.diag_path.unlink(missing_ok=True)
        return data

    def mark_measuring(self) -> None:
        """Tell a diagnosing server to forget what it timed so far."""
        if self.launcher and self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.process.pid) if self.process else None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (the server drains and exits, and cProfile writes its file), then SIGKILL."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"server {self.index} (pid {process.pid}) did not stop in {grace}s: killing it")
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
            if self.log_path and not self.keep_log:
                text = self.output()
                if "Traceback" in text or "ERROR" in text:
                    log(f"server {self.index} log kept (it has errors): {self.log_path}")
                else:
                    self.log_path.unlink(missing_ok=True)


def start_servers(
    count: int, application: str, env: dict, args, *, cwd: Path = ROOT, launcher: Path | None = None
) -> list[Server]:
    servers = []
    try:
        for i in range(count):
            server = Server(
                i,
                application,
                env,
                cwd=cwd,
                profile_dir=args.profile,
                keep_log=args.keep_server_logs,
                launcher=launcher,
            )
            servers.append(server.start())
    except BaseException:
        stop_servers(servers)
        raise
    log("servers listening on", ", ".join(f"{HOST}:{s.port} (pid {s.process.pid})" for s in servers))
    return servers


def stop_servers(servers: list[Server]) -> None:
    threads = [threading.Thread(target=s.stop) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


class Watchdog:
    """A last resort: if the run is not over by `seconds`, kill the servers and exit."""

    def __init__(self, seconds: float, servers_ref: list):
        self.servers_ref = servers_ref
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        log("watchdog: the run exceeded its time limit; killing servers and exiting")
        for server in self.servers_ref:
            if server.process and server.process.poll() is None:
                server.process.kill()
        os._exit(3)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()


def exit_on_signals() -> None:
    """SIGTERM/SIGHUP end the run through the normal `finally` clean-up."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


# ---------------------------------------------------------------------------
# The load


class Protocol:
    """How one server speaks. Subclasses: the product's gateway, the tutorial chat."""

    name = "?"

    def url(self, port: int, device: DeviceSpec) -> str:
        raise NotImplementedError

    def headers(self, port: int, device: DeviceSpec) -> dict:
        return {}

    async def open(self, client: Client) -> tuple:
        """Open the device's socket: (the `websockets` connection, the frames the
        handshake already received and decoded, for the client to record).
        By default a plain `websockets.connect` to `url` with `headers`."""
        ws = await websockets.connect(
            self.url(client.port, client.spec),
            additional_headers=self.headers(client.port, client.spec),
            open_timeout=HANDSHAKE_TIMEOUT,
            max_size=MAX_SIZE,
            **CONNECT_OPTIONS,
        )
        return ws, []

    async def handshake(self, client: Client) -> None:
        """After opening and before the load: whatever else makes the device follow live."""

    def send_frame(self, device: DeviceSpec, ref: str, client_msg_id: str, body: str) -> str:
        raise NotImplementedError

    def classify(self, frame: dict):
        """("delivery", body, seq-or-None) | ("ack", ref) | ("error", ref, code) | None."""
        raise NotImplementedError

    def heartbeat_frame(self, ref: str) -> str | None:
        return None


class RunFailed(Exception):
    """The load could not run (e.g. devices could not connect): reported in the JSON as `error`."""


@dataclass
class DeviceSpec:
    index: int
    token: str | None = None
    conversation: int = 0  # its conversation's index in the layout (scenario one: 0)


@dataclass
class Stats:
    members: int
    latencies_ns: list = field(default_factory=list)  # one per measured delivery
    ack_ns: list = field(default_factory=list)
    per_message: dict = field(default_factory=dict)  # (sender, k) -> [receivers, max latency ns]
    acked: set = field(default_factory=set)  # (sender, k) of the measured messages acknowledged
    deliveries: int = 0  # unique measured deliveries
    duplicates: int = 0
    out_of_order: int = 0
    warmup_deliveries: int = 0
    send_errors: dict = field(default_factory=dict)
    retried_sends: int = 0  # sends refused with a retry hint (rate_limited) and sent again
    unexpected_closes: list = field(default_factory=list)
    first_send_ns: int | None = None
    last_delivery_ns: int | None = None


class Client:
    """One device's connection. Its reader records every delivery as it arrives."""

    def __init__(self, spec: DeviceSpec, port: int, protocol: Protocol, stats: Stats):
        self.spec = spec
        self.port = port
        self.protocol = protocol
        self.stats = stats
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.recipients = 1  # devices a message of this device reaches (its conversation's size)
        self.seen: set = set()
        self.last_seq: int | None = None
        self.last_k: dict[int, int] = {}  # sender -> the latest k received from it (no seq)
        self.pending: dict[str, int] = {}  # ref -> send time (ns), for acks
        self.unacked: dict[str, str] = {}  # ref -> the frame sent, to send again after a retry hint
        self.message_of: dict[str, tuple[int, int]] = {}  # ref -> (sender, k) of a measured send
        self.retries: set = set()  # resends waiting for their hint
        self.closing = False
        self._refs = 0

    def next_ref(self, prefix: str = "r") -> str:
        self._refs += 1
        return f"{prefix}{self.spec.index}-{self._refs}"

    async def connect(self) -> None:
        # The protocol sets self.ws as soon as the socket is open (so that close() closes it).
        self.ws, early = await self.protocol.open(self)
        self._early(early)
        self.reader = asyncio.create_task(self._read())
        await self.protocol.handshake(self)

    def _early(self, frames: list) -> None:
        """Frames the handshake received before the reader started (before anything
        was sent, so no reply of ours): recorded as the reader would record them."""
        now = time.time_ns()
        for frame in frames:
            kind = self.protocol.classify(frame)
            if kind is not None and kind[0] == "delivery":
                self._delivery(now, kind[1], kind[2])
            elif kind is not None and kind[0] == "error":
                self.stats.send_errors[kind[2]] = self.stats.send_errors.get(kind[2], 0) + 1

    async def _read(self) -> None:
        stats = self.stats
        classify = self.protocol.classify
        try:
            async for text in self.ws:
                now = time.time_ns()
                frame = json.loads(text)
                kind = classify(frame)
                if kind is None:
                    continue
                if kind[0] == "delivery":
                    self._delivery(now, kind[1], kind[2])
                elif kind[0] == "ack":
                    self.unacked.pop(kind[1], None)
                    acked = self.message_of.pop(kind[1], None)
                    if acked is not None:
                        stats.acked.add(acked)
                    sent = self.pending.pop(kind[1], None)
                    if sent is not None:
                        stats.ack_ns.append(now - sent)
                elif kind[0] == "error":
                    retry_after = kind[3] if len(kind) > 3 else None
                    if retry_after is not None and kind[1] in self.unacked:
                        # Refused for rate, not run: the same frame (same client_msg_id)
                        # again after the hint, as a client should; latency keeps counting
                        # from the first send.
                        stats.retried_sends += 1
                        self._send_later(retry_after, self.unacked[kind[1]])
                        continue
                    self.pending.pop(kind[1], None)
                    self.unacked.pop(kind[1], None)
                    stats.send_errors[kind[2]] = stats.send_errors.get(kind[2], 0) + 1
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closing:
                code = self.ws.close_code
                stats.unexpected_closes.append(
                    {"device": self.spec.index, "code": code, "reason": self.ws.close_reason}
                )

    def _send_later(self, delay: float, text: str) -> None:
        async def send() -> None:
            await asyncio.sleep(delay)
            if not self.closing:
                try:
                    await self.ws.send(text)
                except websockets.ConnectionClosed:
                    pass  # the reader noted the close; the message stays unacknowledged

        self.retries.add(task := asyncio.ensure_future(send()))
        task.add_done_callback(self.retries.discard)

    def _delivery(self, now: int, body: str, seq) -> None:
        stats = self.stats
        if seq is not None:
            if self.last_seq is not None and seq != self.last_seq + 1:
                stats.out_of_order += 1
            self.last_seq = seq
        # body: "<phase>:<sender>:<k>:<send time ns>"
        try:
            phase, sender, k, sent_ns = body.split(":")
            key = (int(sender), int(k))
            sent_ns = int(sent_ns)
        except ValueError:
            return  # not one of ours
        if seq is None:
            # No seq (the tutorial chat): a sender's messages must arrive in the order sent.
            last = self.last_k.get(key[0])
            if last is not None and key[1] < last:
                stats.out_of_order += 1
            else:
                self.last_k[key[0]] = key[1]
        if phase != "m":
            stats.warmup_deliveries += 1
            return
        if key in self.seen:
            stats.duplicates += 1
            return
        self.seen.add(key)
        latency = now - sent_ns
        stats.deliveries += 1
        stats.latencies_ns.append(latency)
        stats.last_delivery_ns = now
        entry = stats.per_message.get(key)
        if entry is None:
            stats.per_message[key] = [1, latency]
        else:
            entry[0] += 1
            if latency > entry[1]:
                entry[1] = latency

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:
                pass
        if self.reader is not None:
            try:
                await asyncio.wait_for(self.reader, 5)
            except Exception:
                self.reader.cancel()


@dataclass
class SendTally:
    sent: int = 0  # measured sends
    expected_deliveries: int = 0  # over the measured sends, the members of each one's conversation
    warmup_sent: int = 0
    max_lag_s: float = 0.0  # how late (vs schedule) the client managed to send, worst case
    t_measure_start: float = 0.0  # perf_counter
    t_measure_end: float = 0.0


async def sender_loop(client: Client, i: int, args, t0: float, tally: SendTally, stats: Stats) -> None:
    """Open loop: sender i sends on its own schedule whatever the replies do, so a
    slow server shows up as latency rather than as a lower offered rate."""
    interval = args.senders / args.rate
    offset = i / args.rate  # senders are staggered evenly
    measure_from = t0 + args.warmup
    stop_at = measure_from + args.duration
    protocol = client.protocol
    k = 0
    while True:
        scheduled = t0 + offset + k * interval
        if scheduled >= stop_at:
            return
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        measured = scheduled >= measure_from
        sent_ns = time.time_ns()
        ref = client.next_ref("s")
        body = f"{'m' if measured else 'w'}:{i}:{k}:{sent_ns}"
        if measured:
            client.pending[ref] = sent_ns
            tally.sent += 1
            tally.expected_deliveries += client.recipients
            if stats.first_send_ns is None:
                stats.first_send_ns = sent_ns
        else:
            tally.warmup_sent += 1
        frame = protocol.send_frame(client.spec, ref, f"bench-{i}-{k}", body)
        if measured:
            client.unacked[ref] = frame
            client.message_of[ref] = (i, k)
        try:
            await client.ws.send(frame)
        except websockets.ConnectionClosed:
            # The server closed this device (the tutorial chat does when its Redis pool
            # runs dry): the schedule goes on, each message counted as sent and not
            # acknowledged, its deliveries as lost.
            stats.send_errors["connection_closed"] = stats.send_errors.get("connection_closed", 0) + 1
        tally.max_lag_s = max(tally.max_lag_s, time.perf_counter() - scheduled)
        k += 1


def lost_acknowledged(clients: list[Client], stats: Stats) -> int:
    """What the server promised and did not do: deliveries missing of the
    messages it acknowledged, to the devices it kept connected to the end.
    `lost` counts every message sent; a sender the server closed (4430 past
    its rate limit, or the tutorial chat's failures) leaves its later
    messages unsent and itself without the rest, which is not a loss."""
    closed = {close["device"] for close in stats.unexpected_closes}
    open_members: dict[int, list[Client]] = {}
    for client in clients:
        if client.spec.index not in closed:
            open_members.setdefault(client.spec.conversation, []).append(client)
    return sum(
        1
        for sender, k in stats.acked
        for member in open_members.get(clients[sender].spec.conversation, ())
        if (sender, k) not in member.seen
    )


async def heartbeat_loop(clients: list[Client], interval: float) -> None:
    """Each client sends a heartbeat every `interval`, the clients spread evenly over it
    (as devices that connected at different moments do): 1,000 pings at the same moment
    would stall the server for a while every interval, which real devices do not cause."""
    if not clients:
        return
    step = interval / len(clients)
    due = time.perf_counter()
    for k in itertools.count():
        due += step
        await asyncio.sleep(max(due - time.perf_counter(), 0))
        client = clients[k % len(clients)]
        text = client.protocol.heartbeat_frame(client.next_ref("p"))
        if text and not client.closing:
            try:
                await client.ws.send(text)
            except websockets.ConnectionClosed:
                pass


def percentile(sorted_values: list, q: float):
    if not sorted_values:
        return None
    rank = max(1, int(round(q / 100.0 * len(sorted_values) + 0.5 - 1e-9)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(ns) -> float | None:
    return None if ns is None else round(ns / 1e6, 2)


async def settle(server_cpu, timeout: float, *, idle_cores: float = 0.1, step: float = 0.5) -> float:
    """Wait until the servers have finished reacting to the connections (work such as
    presence broadcasts), so it does not spill into the measured window: two
    consecutive `step`s below `idle_cores`. Returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    last = server_cpu()
    while time.perf_counter() - started < timeout:
        await asyncio.sleep(step)
        now = server_cpu()
        quiet = quiet + 1 if (now - last) / step < idle_cores else 0
        last = now
        if quiet >= 2:
            break
    else:
        log(f"servers still busy after {timeout}s; starting anyway")
    waited = time.perf_counter() - started
    log(f"servers idle after {waited:.1f}s")
    return waited


async def run_load(protocol: Protocol, devices: list[DeviceSpec], servers: list, args, *, cpu_probes: dict) -> dict:
    """Connect every device, run warm-up + measured sending, drain, and compute the figures.

    `cpu_probes`: name -> zero-argument callable giving CPU seconds so far (or None);
    each is read at the start and at the end of the measured window.
    """
    # What the machine is doing without us (other people's work), over one second.
    busy = machine_busy_seconds()
    await asyncio.sleep(1.0)
    background = round(machine_busy_seconds() - busy, 2)
    speed = machine_speed_ms()
    stats = Stats(members=len(devices))
    clients = [Client(d, servers[d.index % len(servers)].port, protocol, stats) for d in devices]
    sizes: dict[int, int] = {}
    for d in devices:
        sizes[d.conversation] = sizes.get(d.conversation, 0) + 1
    for client in clients:
        client.recipients = sizes[client.spec.conversation]

    started = time.perf_counter()
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def connect(client):
        async with gate:
            await client.connect()

    log(f"connecting {len(clients)} devices to {len(servers)} server(s)")
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(connect(c) for c in clients), return_exceptions=True), CONNECT_TIMEOUT
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
    except TimeoutError:
        failures = [f"not all connected within {CONNECT_TIMEOUT:g}s"]
    if failures:
        ready = sum(1 for c in clients if c.ws is not None)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        first = failures[0]
        if isinstance(first, asyncio.TimeoutError) or isinstance(getattr(first, "__cause__", None), TimeoutError):
            detail = f"no answer within {HANDSHAKE_TIMEOUT:g}s"
        elif isinstance(first, BaseException):
            detail = f"{type(first).__name__}: {first}"
        else:
            detail = first
        raise RunFailed(
            f"{len(failures)} of {len(clients)} devices failed to connect and follow live "
            f"({ready} sockets were open); first failure: {detail}"
        )
    connect_s = time.perf_counter() - started
    log(f"connected and following live in {connect_s:.1f}s")
    settle_s = await settle(cpu_probes["servers"], args.settle_timeout)
    stats.unexpected_closes.clear()
    # The devices' objects stay until the end: out of the collector's way, so that a full
    # collection in this process (hundreds of ms with 1,000 devices) never stalls the readers.
    gc.collect()
    gc.freeze()

    heartbeat = asyncio.create_task(heartbeat_loop(clients, getattr(protocol, "heartbeat_interval", 20.0)))
    tally = SendTally()
    try:
        t0 = time.perf_counter() + 0.2
        senders = [sender_loop(clients[i], i, args, t0, tally, stats) for i in range(args.senders)]
        send_all = asyncio.create_task(asyncio.wait_for(asyncio.gather(*senders), args.warmup + args.duration + 30))

        # The measured window's CPU readings.
        await asyncio.sleep(max(t0 + args.warmup - time.perf_counter(), 0))
        for server in servers:
            server.mark_measuring()
        cpu_start = {name: probe() for name, probe in cpu_probes.items()}
        cpu_start["client"] = time.process_time()
        cpu_start["machine"] = machine_busy_seconds()
        window_start = time.perf_counter()
        log(f"warm-up done ({tally.warmup_sent} messages); measuring for {args.duration}s at {args.rate:g} msgs/s")
        await send_all
        window = time.perf_counter() - window_start
        cpu_end = {name: probe() for name, probe in cpu_probes.items()}
        cpu_end["client"] = time.process_time()
        cpu_end["machine"] = machine_busy_seconds()

        # Drain: wait for every delivery and every ack, within a limit.
        expected = tally.expected_deliveries
        drain_deadline = time.perf_counter() + args.drain_timeout
        # Progress is anything of ours arriving: a server far behind is still
        # delivering the warm-up's messages when the measured window ends.
        progress = (stats.deliveries + stats.warmup_deliveries, len(stats.ack_ns), time.perf_counter())
        while time.perf_counter() < drain_deadline:
            if stats.deliveries >= expected and not any(c.pending for c in clients):
                break
            await asyncio.sleep(0.05)
            now = (stats.deliveries + stats.warmup_deliveries, len(stats.ack_ns))
            if now != progress[:2]:
                progress = (*now, time.perf_counter())
            elif time.perf_counter() - progress[2] > DRAIN_IDLE_SECONDS:
                log(f"nothing arrived for {DRAIN_IDLE_SECONDS}s: the rest is lost")
                break
        drained = time.perf_counter() - window_start - window
        log(f"sent {tally.sent}, {stats.deliveries}/{expected} deliveries, drained in {drained:.2f}s")
        # A little longer, so late duplicates would be counted.
        await asyncio.sleep(0.5)
    finally:
        heartbeat.cancel()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    latencies = sorted(stats.latencies_ns)
    acks = sorted(stats.ack_ns)
    complete = sorted(v[1] for key, v in stats.per_message.items() if v[0] >= clients[key[0]].recipients)
    span_ns = (stats.last_delivery_ns - stats.first_send_ns) if stats.deliveries else None

    cpu = {}
    for name in list(cpu_probes) + ["client", "machine"]:
        a, b = cpu_start.get(name), cpu_end.get(name)
        if a is not None and b is not None:
            cpu[f"{name}_s"] = round(b - a, 2)
            cpu[f"{name}_cores"] = round((b - a) / window, 2)
    # CPU per unit of work: the servers' CPU in the measured window over the
    # messages sent in it and their deliveries (drain included, so a saturated
    # server's figures are a lower bound).
    measured = stats.deliveries
    if "servers_s" in cpu and measured:
        cpu["servers_us_per_delivery"] = round(cpu["servers_s"] / measured * 1e6, 1)
        cpu["servers_us_per_message"] = round(cpu["servers_s"] / max(tally.sent, 1) * 1e6, 1)
    unacked = sum(len(c.pending) for c in clients)
    offered_recipients = sum(c.recipients for c in clients[: args.senders]) / args.senders
    return {
        "sent": tally.sent,
        "acked": len(acks),
        "unacked": unacked,
        "send_errors": stats.send_errors,
        "retried_sends": stats.retried_sends,
        "expected_deliveries": expected,
        "deliveries": stats.deliveries,
        "lost": expected - stats.deliveries,
        # None where the server acknowledges nothing (the tutorial chat).
        "lost_acknowledged": lost_acknowledged(clients, stats) if stats.ack_ns else None,
        "duplicates": stats.duplicates,
        "out_of_order": stats.out_of_order,
        "deliveries_per_second": round(stats.deliveries / (span_ns / 1e9), 1) if span_ns else 0.0,
        "offered_deliveries_per_second": round(args.rate * offered_recipients, 1),
        # What was carried, in messages: deliveries/s over the recipients of a message.
        "delivered_messages_per_second": (
            round(stats.deliveries / (span_ns / 1e9) * tally.sent / expected, 1) if span_ns and expected else 0.0
        ),
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)),
            "p90": ms(percentile(latencies, 90)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(latencies[-1] if latencies else None),
            "mean": ms(sum(latencies) / len(latencies)) if latencies else None,
        },
        "all_recipients_latency_ms": {
            "messages": len(complete),
            "p50": ms(percentile(complete, 50)),
            "p99": ms(percentile(complete, 99)),
            "max": ms(complete[-1] if complete else None),
        },
        "ack_latency_ms": {
            "p50": ms(percentile(acks, 50)),
            "p99": ms(percentile(acks, 99)),
            "max": ms(acks[-1] if acks else None),
        },
        "client_max_send_lag_ms": round(tally.max_lag_s * 1000, 2),
        "connect_s": round(connect_s, 2),
        "settle_s": round(settle_s, 2),
        "drain_s": round(drained, 2),
        "closed_by_server": len(stats.unexpected_closes),
        "unexpected_closes": stats.unexpected_closes[:10],
        "cpu": cpu,
        "background_busy_cores": background,
        "machine_speed_ms": speed,
    }


def emit(result: dict, args) -> None:
    text = json.dumps(result, indent=None, sort_keys=False)
    print(text, flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


def code_identity(root: Path = ROOT) -> dict:
    """Which code ran: the commit, and a digest of the Python sources under `root`
    (outside .venv, tests and bench), so runs on an uncommitted tree can be told apart."""
    import hashlib

    root = Path(root)
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", ".", ":!bench", ":!tests"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in {".venv", "tests", "bench", ".git"}:
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    if not (root / ".git").exists():
        head, dirty = "", ""  # an exported tree: only the digest says what it is
    identity = {"commit": head, "uncommitted_changes": bool(dirty), "source_digest": digest.hexdigest()[:12]}
    if root != ROOT:
        identity["project"] = str(root)
    return identity


def source_digest(directory: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*.py")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def config_of(args, benchmark: str, *, root: Path = ROOT, code: dict | None = None, **extra) -> dict:
    layout = {"layout": layout_summary(conversation_layout(args))} if args.scenario == "many" else {}
    return {
        "benchmark": benchmark,
        "scenario": args.scenario,
        **layout,
        "members": args.members,
        "senders": args.senders,
        "rate": args.rate,
        "duration": args.duration,
        "warmup": args.warmup,
        "processes": args.processes,
        **extra,
        "code": code if code is not None else code_identity(root),
    }
