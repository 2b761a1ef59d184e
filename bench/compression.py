"""WebSocket compression (permessage-deflate): the bytes it saves and the CPU it costs.

    .venv/bin/python bench/compression.py [--runs 3] [--members 40] [--rate 20] [--duration 20]

One Daphne process (production settings: DEBUG off, a SECRET_KEY, PostgreSQL and
Redis, WS_COMPRESSION on) and real clients (the Python client's `Connection` over
`websockets`), offering permessage-deflate ("deflate") or not ("plain"). Bytes on
the wire are what each client's socket reads and writes (WebSocket frames and
the HTTP upgrade, not TCP/IP headers), counted in its asyncio protocol.

  1. live: --members devices follow one conversation; --actors of them act on an
     open-loop schedule of --rate actions/s, the same seeded sequence in every run:
     messages of varied length (mostly a few words, some sentences, a few
     paragraphs, some accents and emoji), edits and deletes of their own
     messages, read receipts, typing start/stop, presence away/online. For
     --duration s, then until every device has every change, nothing arrived
     for a second and typing indicators have expired: frames and bytes every
     device received, the server's CPU over the same time;
  2. catch-up: a device --catch-up changes behind in another conversation (500
     by default, SYNC_MAX_CHANGES) connects and syncs: the bytes from its `sync`
     to the `ok`, and the server's CPU for it (over ten such syncs);
  3. memory (--memory-connections, 0 to skip): a fresh server per mode, its RSS
     before and after that many connections went live (hello, sync) and idle,
     and again after each had received compressed events and sent a request;
  4. in this process: deflate's cost per frame on the frames of a live run, on
     its own and as a catch-up stream, and a catch-up compressor's memory.

Modes alternate within each run (plain first in odd runs); medians over --runs
(and over --catch-up-runs syncs per mode). One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

from realtime_sync_client import Connection
from websockets.asyncio.client import ClientConnection

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import run as product  # noqa: E402
from loadgen import HOST, ROOT, Watchdog, log  # noqa: E402

MODES = ("plain", "deflate")
DRAIN_QUIET = 1.0  # a live run ends once no device received anything for this long
DRAIN_MAX = 30.0
# The server's TYPING_TIMEOUT (6 s) and a second: indicators left running have ended.
TYPING_EXPIRY = 7.0
CATCH_UP_REPEAT = 10  # syncs per catch-up measurement


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="live runs per mode")
    p.add_argument("--members", type=int, default=40, help="devices following the live conversation")
    p.add_argument("--actors", type=int, default=10, help="how many of them act")
    p.add_argument("--rate", type=float, default=20.0, help="actions per second, over all actors")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of actions per live run")
    p.add_argument("--catch-up", type=int, default=500, help="changes the catching-up device is behind")
    p.add_argument("--catch-up-runs", type=int, default=5, help="syncs per mode")
    p.add_argument("--memory-connections", type=int, default=1000, help="0: no memory measurement")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--db-name", default="realtime_bench_deflate")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--db-pool-max", type=int, default=10)
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, default=11, help="Redis db index, flushed at start and end")
    p.add_argument("--output", metavar="FILE", help="also write the result JSON to FILE")
    p.add_argument("--keep-server-logs", action="store_true")
    args = p.parse_args()
    if not (1 <= args.actors <= args.members) or args.runs < 1 or args.rate <= 0:
        sys.exit("need 1 <= actors <= members, runs >= 1, rate > 0")
    if not (1 <= args.redis_db <= 15):
        sys.exit("--redis-db must be 1..15 (it is flushed)")
    if not product.DB_NAME_RE.match(args.db_name) or args.db_name in {"postgres", "template0", "template1"}:
        sys.exit("--db-name must be a plain lower-case identifier and not a system database")
    # What run.py's and loadgen's helpers read.
    args.capacity, args.profile, args.project = None, None, ROOT
    return args


# ---------------------------------------------------------------------------
# Realistic text

WORDS = """the a to and of I you it is in that for on we be this have with not are at
so can just do my will but your if me was all they what get about when out up there
one time know like now how think good see no yes ok okay sure thanks great sounds
perfect maybe later today tomorrow tonight morning meeting call lunch coffee dinner
weekend week project ticket review merge deploy release build test fix bug issue
update plan design draft doc slides notes client team office home train station
minutes hour late early soon back done ready working looking waiting check send
share link file photo message question answer idea problem change version number
café naïve déjà vu Grüße señor über façade""".split()  # noqa: SIM905 (a text, not a list)
EMOJI = ["👍", "😂", "🙏", "🎉", "❤️", "👀", "🙂"]


def body(rng: random.Random) -> str:
    """A chat message: mostly a few words, some a sentence or two, a few a paragraph."""
    roll = rng.random()
    words = rng.randint(1, 8) if roll < 0.6 else rng.randint(8, 30) if roll < 0.9 else rng.randint(30, 150)
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    text = text[0].upper() + text[1:] + rng.choice([".", "!", "?", "", "..."])
    if rng.random() < 0.15:
        text += " " + rng.choice(EMOJI)
    return text[:4000]


# ---------------------------------------------------------------------------
# Setup


def prepare(args) -> dict:
    """Users, devices and conversations; the catch-up history. Django in this process."""
    log(f"recreating database {args.db_name}, flushing Redis db {args.redis_db}")
    product.recreate_database(args)
    loadgen.flush_redis(args)
    os.environ.update(product.server_env(args))
    os.environ.update(DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="4")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from conversations.models import Conversation
    from conversations.services import create_conversation, delete_message, edit_message, send_message
    from devices.services import issue_device

    call_command("migrate", verbosity=0, interactive=False)
    User = get_user_model()
    rng = random.Random(args.seed)

    def users(prefix: str, count: int) -> list:
        made = [User.objects.create_user(f"{prefix}{i:04d}") for i in range(count)]  # no password: no hashing
        return [(user, issue_device(user=user, name=f"{prefix} device {i}").token) for i, user in enumerate(made)]

    live = users("live", args.members)
    live_conversation, _ = create_conversation(
        creator=live[0][0], kind="group", title="live", member_ids=[u.pk for u, _ in live[1:]]
    )
    # The catch-up: a reader and four writers, then --catch-up changes after the reader's join.
    (reader, reader_token), *writers = users("history", 5)
    history, _ = create_conversation(
        creator=writers[0][0], kind="group", title="history", member_ids=[reader.pk] + [u.pk for u, _ in writers[1:]]
    )
    start_seq = Conversation.objects.get(pk=history.pk).last_seq
    sent: list = []  # (message, sender)
    log(f"writing {args.catch_up} changes to the catch-up conversation")
    for i in range(args.catch_up):
        roll = rng.random()
        if roll < 0.08 and sent:
            message, sender = rng.choice(sent)
            if message.deleted_at is None:
                edit_message(
                    actor=sender,
                    conversation_id=history.pk,
                    message_id=message.pk,
                    body=body(rng),
                    expected_version=message.version,
                )
                message.refresh_from_db()
                continue
        if roll < 0.11 and sent:
            message, sender = sent.pop(rng.randrange(len(sent)))
            delete_message(actor=sender, conversation_id=history.pk, message_id=message.pk)
            continue
        sender = rng.choice(writers)[0]
        result = send_message(sender=sender, conversation_id=history.pk, client_msg_id=f"h{i}", body=body(rng))
        sent.append((result.message, sender))
    history_last = Conversation.objects.get(pk=history.pk).last_seq
    assert history_last - start_seq == args.catch_up, (start_seq, history_last)
    # Idle connections for the memory figures: conversations of 20.
    memory = users("idle", args.memory_connections)
    memory_conversations = []
    for i in range(0, len(memory), 20):
        group = memory[i : i + 20]
        conversation, _ = create_conversation(
            creator=group[0][0], kind="group", title=f"idle {i}", member_ids=[u.pk for u, _ in group[1:]]
        )
        memory_conversations.append(conversation.pk)
    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
    log(f"{args.members} live devices, catch-up of {args.catch_up}, {len(memory)} idle devices")
    return {
        "live": (live_conversation.pk, [token for _, token in live]),
        "history": (history.pk, history_last, reader_token),
        "memory": [(memory_conversations[i // 20], token) for i, (_, token) in enumerate(memory)],
    }


def last_seq(conversation_id: int) -> int:
    from conversations.models import Conversation

    return Conversation.objects.get(pk=conversation_id).last_seq


def last_seqs(conversation_ids) -> dict[int, int]:
    from conversations.models import Conversation

    return dict(Conversation.objects.filter(pk__in=set(conversation_ids)).values_list("pk", "last_seq"))


# ---------------------------------------------------------------------------
# Clients


class Counting(ClientConnection):
    """websockets' client connection, counting the bytes its socket reads and writes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bytes_in = 0
        self.bytes_out = 0

    def connection_made(self, transport):
        write = transport.write

        def counting(data):
            self.bytes_out += len(data)
            write(data)

        transport.write = counting
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        super().data_received(data)


class Device(Connection):
    """One device: counts the frames it receives by kind, and its last seq."""

    def __init__(self, url: str, token: str, mode: str, conversation_id: int | None = None):
        options = {
            "compression": "deflate" if mode == "deflate" else None,
            "create_connection": Counting,
            "proxy": None,
            "ping_interval": None,
        }
        super().__init__(url, token=token, on_frame=lambda frame: None, open_timeout=60, connect_options=options)
        self.conversation_id = conversation_id
        self.frames = 0
        self.kinds: dict[str, int] = {}
        self.last_seq = 0
        self.texts: list[dict] | None = None  # every frame, when kept

    def frame_received(self, frame) -> None:
        self.frames += 1
        kind = frame.get("kind") or frame.get("type")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if frame.get("conversation_id") == self.conversation_id and frame.get("seq"):
            self.last_seq = max(self.last_seq, frame["seq"])
        if self.texts is not None:
            self.texts.append(frame)
        super().frame_received(frame)

    @property
    def counters(self) -> Counting:
        return self.ws

    def negotiated(self) -> bool:
        return "permessage-deflate" in (self.ws.response.headers.get("Sec-WebSocket-Extensions") or "")


async def connect_all(devices: list[Device], cursors, concurrency: int = 20) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(device: Device) -> None:
        async with gate:
            await device.open()
            reply = await asyncio.wait_for(device.request("sync", cursors=cursors(device)), 60)
            if reply.get("type") != "ok":
                raise RuntimeError(f"sync failed: {reply}")

    await asyncio.gather(*(one(d) for d in devices))


async def close_all(devices: list[Device]) -> None:
    async def one(device):
        try:
            await asyncio.wait_for(device.close(), 5)
        except Exception:
            device.abort()

    await asyncio.gather(*(one(d) for d in devices))


async def keep_alive(devices: list[Device], stop: asyncio.Event, every: float = 20.0) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            await asyncio.gather(*(d.send({"type": "ping"}) for d in devices if not d.closed), return_exceptions=True)


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


# ---------------------------------------------------------------------------
# 1. Live


class Actor:
    def __init__(self, device: Device, conversation_id: int, tag: str):
        self.device = device
        self.tag = tag  # keeps client_msg_ids unique across runs
        self.conversation_id = conversation_id
        self.messages: list[list[int]] = []  # [message id, version]
        self.away = False
        self.errors: dict[str, int] = {}

    async def act(self, action: str, text: str, n: int) -> None:
        c = self.conversation_id
        if action == "send" or (action in ("edit", "delete") and not self.messages):
            reply = await self.device.request("send", conversation_id=c, client_msg_id=f"{self.tag}-{n}", body=text)
            if reply.get("type") == "ok":
                self.messages.append([reply["result"]["message_id"], 1])
        elif action == "edit":
            message = self.messages[-1 - n % min(3, len(self.messages))]
            reply = await self.device.request(
                "edit", conversation_id=c, message_id=message[0], body=text, version=message[1]
            )
            if reply.get("type") == "ok":
                message[1] = reply["result"]["message"]["version"]
        elif action == "delete":
            message = self.messages.pop(0)
            reply = await self.device.request("delete", conversation_id=c, message_id=message[0])
        elif action == "read":
            reply = await self.device.request("read", conversation_id=c, seq=self.device.last_seq)
        elif action in ("typing.start", "typing.stop"):
            state = action.split(".")[1]
            reply = await self.device.request("typing", conversation_id=c, state=state)
        else:  # presence
            self.away = not self.away
            reply = await self.device.request("presence", status="away" if self.away else "online")
        if reply.get("type") != "ok":
            code = reply.get("code", "?")
            self.errors[code] = self.errors.get(code, 0) + 1


# The mix of actions, by share.
ACTIONS = [
    ("send", 0.45),
    ("edit", 0.06),
    ("delete", 0.02),
    ("read", 0.17),
    ("typing.start", 0.15),
    ("typing.stop", 0.05),
    ("presence", 0.10),
]


def schedule(args) -> list[tuple[float, int, str, str]]:
    """(time, actor, action, text): the same for every run."""
    rng = random.Random(args.seed * 1000 + 1)
    names = [name for name, _ in ACTIONS]
    weights = [weight for _, weight in ACTIONS]
    count = int(args.rate * args.duration)
    return [
        (i / args.rate, rng.randrange(args.actors), rng.choices(names, weights)[0], body(rng)) for i in range(count)
    ]


async def live_run(server, setup, args, mode: str, tag: str, *, keep_texts: bool = False) -> dict:
    conversation_id, tokens = setup["live"]
    cursor = await asyncio.to_thread(last_seq, conversation_id)
    devices = [Device(server_url(server), token, mode, conversation_id) for token in tokens]
    await connect_all(devices, lambda d: {str(conversation_id): cursor})
    for device in devices:
        device.last_seq = max(device.last_seq, cursor)
    negotiated = sum(d.negotiated() for d in devices)
    stop = asyncio.Event()
    alive = asyncio.create_task(keep_alive(devices, stop))
    try:
        await loadgen.settle(server.cpu_seconds, 30)
        if keep_texts:
            devices[-1].texts = []
        actors = [Actor(d, conversation_id, f"{tag}a{i}") for i, d in enumerate(devices[: args.actors])]
        start = snapshot(devices)
        kinds_start = [dict(d.kinds) for d in devices]
        cpu_start, busy_start, t0 = server.cpu_seconds(), loadgen.machine_busy_seconds(), time.perf_counter()
        tasks = []
        for n, (at, who, action, text) in enumerate(schedule(args)):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(actors[who].act(action, text, n)))
        await asyncio.gather(*tasks, return_exceptions=True)
        last_action = time.perf_counter()
        # Every device has every change of the log, then nothing arrives any more
        # (coalesced receipts and presence) and typing indicators have expired.
        final = await asyncio.to_thread(last_seq, conversation_id)
        deadline = time.perf_counter() + DRAIN_MAX
        seen, quiet_since = -1, time.perf_counter()
        while time.perf_counter() < deadline:
            now = sum(d.frames for d in devices)
            if now != seen:
                seen, quiet_since = now, time.perf_counter()
            complete = all(d.last_seq >= final for d in devices)
            quiet = time.perf_counter() - quiet_since >= DRAIN_QUIET
            if complete and quiet and time.perf_counter() - last_action >= TYPING_EXPIRY:
                break
            await asyncio.sleep(0.1)
        else:
            log(f"  not drained within {DRAIN_MAX:g}s: {sum(d.last_seq < final for d in devices)} devices behind")
        behind = sum(d.last_seq < final for d in devices)
        window = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu_start
        busy = loadgen.machine_busy_seconds() - busy_start
        end = snapshot(devices)
    finally:
        stop.set()
        await alive
        await close_all(devices)
    frames, bytes_in, bytes_out = (end[k] - start[k] for k in ("frames", "bytes_in", "bytes_out"))
    kinds: dict[str, int] = {}
    for device, before in zip(devices, kinds_start, strict=True):
        for kind, count in device.kinds.items():
            if count - before.get(kind, 0):
                kinds[kind] = kinds.get(kind, 0) + count - before.get(kind, 0)
    errors: dict[str, int] = {}
    for actor in actors:
        for code, count in actor.errors.items():
            errors[code] = errors.get(code, 0) + count
    result = {
        "mode": mode,
        "negotiated": negotiated,
        "devices": len(devices),
        "devices_behind_at_end": behind,
        "actions": len(tasks),
        "action_errors": errors,
        "frames_received": frames,
        "bytes_received": bytes_in,
        "bytes_sent_by_clients": bytes_out,
        "bytes_per_frame": round(bytes_in / frames, 1) if frames else None,
        "server_cpu_s": round(cpu, 3),
        "server_us_per_frame": round(cpu / frames * 1e6, 1) if frames else None,
        "window_s": round(window, 1),
        "machine_busy_cores": round(busy / window, 2),
        "frames_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
    }
    if keep_texts:
        result["_texts"] = devices[-1].texts
    return result


def snapshot(devices: list[Device]) -> dict:
    return {
        "frames": sum(d.frames for d in devices),
        "bytes_in": sum(d.counters.bytes_in for d in devices),
        "bytes_out": sum(d.counters.bytes_out for d in devices),
    }


def server_url(server) -> str:
    return f"ws://{HOST}:{server.port}/ws/v1/"


# ---------------------------------------------------------------------------
# 2. Catch-up


async def catch_up(server, setup, args, mode: str) -> dict:
    conversation_id, history_last, token = setup["history"]
    device = Device(server_url(server), token, mode, conversation_id)
    await device.open()
    try:
        await loadgen.settle(server.cpu_seconds, 30, step=0.25)
        cursors = {str(conversation_id): history_last - args.catch_up}
        samples = []
        cpu_total = 0.0
        # The same catch-up again and again (a sync with the same cursor sends the
        # same changes): the server's CPU is read in clock ticks (10 ms), so it is
        # taken over all of them.
        for _ in range(CATCH_UP_REPEAT):
            before, frames_before, sent_before = device.counters.bytes_in, device.frames, device.counters.bytes_out
            cpu, t0 = server.cpu_seconds(), time.perf_counter()
            reply = await asyncio.wait_for(device.request("sync", cursors=cursors), 60)
            elapsed = time.perf_counter() - t0
            cpu_total += server.cpu_seconds() - cpu
            assert reply["type"] == "ok" and reply["result"]["cursors"] == {str(conversation_id): history_last}, reply
            samples.append(
                {
                    "frames": device.frames - frames_before,  # the `ok` included
                    "bytes_received": device.counters.bytes_in - before,
                    "bytes_sent": device.counters.bytes_out - sent_before,
                    "sync_to_ok_ms": elapsed * 1000,
                }
            )
        assert device.last_seq == history_last
        first = samples[0]
        return {
            "negotiated": device.negotiated(),
            "frames": first["frames"],
            "bytes_received": first["bytes_received"],
            "bytes_received_repeats": sorted({s["bytes_received"] for s in samples}),
            "bytes_sent": first["bytes_sent"],
            "server_cpu_ms": round(cpu_total / len(samples) * 1000, 1),
            "sync_to_ok_ms": round(statistics.median(s["sync_to_ok_ms"] for s in samples), 1),
        }
    finally:
        await close_all([device])


# ---------------------------------------------------------------------------
# 3. Memory


async def memory(setup, env, args, mode: str) -> dict:
    """A fresh server: RSS with N connections idle, then after each got events and sent a request."""
    server = loadgen.start_servers(1, "realtime_sync.asgi:application", env, args)[0]
    pid = server.process.pid
    entries = setup["memory"]
    devices: list[Device] = []
    stop = asyncio.Event()
    alive = None
    try:
        cursors = await asyncio.to_thread(last_seqs, [c for c, _ in entries])
        url = server_url(server)
        # Warm up: the hub, the pools, lazy imports, the first connections' allocations.
        warm = [Device(url, token, mode, c) for c, token in entries[:20]]
        await connect_all(warm, lambda d: {str(d.conversation_id): cursors[d.conversation_id]})
        await close_all(warm)
        await loadgen.settle(server.cpu_seconds, 30)
        await asyncio.sleep(1.0)
        rss_before = kib(pid)
        devices = [Device(url, token, mode, c) for c, token in entries]
        started = time.perf_counter()
        await connect_all(devices, lambda d: {str(d.conversation_id): cursors[d.conversation_id]})
        connect_s = time.perf_counter() - started
        alive = asyncio.create_task(keep_alive(devices, stop))
        await loadgen.settle(server.cpu_seconds, 60)
        await asyncio.sleep(1.0)
        rss_idle = kib(pid)
        # Active: in each conversation one device sends five messages (every device
        # receives them) and every device sends a read receipt (a request it compresses).
        senders = {}
        for device in devices:
            senders.setdefault(device.conversation_id, device)
        for n in range(5):
            await asyncio.gather(
                *(
                    d.request("send", conversation_id=c, client_msg_id=f"m{n}-{mode}-{c}", body=body(random.Random(n)))
                    for c, d in senders.items()
                )
            )
        await asyncio.gather(*(d.request("read", conversation_id=d.conversation_id, seq=d.last_seq) for d in devices))
        await loadgen.settle(server.cpu_seconds, 60)
        await asyncio.sleep(1.0)
        rss_active = kib(pid)
        n = len(devices)
        return {
            "connections": n,
            "negotiated": sum(d.negotiated() for d in devices),
            "rss_before_kib": rss_before,
            "rss_idle_kib": rss_idle,
            "rss_active_kib": rss_active,
            "idle_kib_per_connection": round((rss_idle - rss_before) / n, 2),
            "active_kib_per_connection": round((rss_active - rss_before) / n, 2),
            "connect_s": round(connect_s, 1),
        }
    finally:
        stop.set()
        if alive is not None:
            await alive
        await close_all(devices)
        loadgen.stop_servers([server])


def kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------------------
# 4. In this process


def micro(frames: list[dict], catch_up_texts: list[str]) -> dict:
    """deflate's CPU per frame on a live run's frames (each on its own, as shared
    frames are made once per process) and on a catch-up (one stream); the sizes
    with other choices (a stream per connection for live frames, zlib's default
    window and memLevel); the memory of one compressor."""
    from core.events import dumps
    from gateway import compression
    from gateway.transport import Frame

    texts = [dumps(f) for f in frames]

    def per_frame(fn, items, repeat=5) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(items)
            best = min(best, time.perf_counter() - t0)
        return round(best / len(items) * 1e6, 2)

    def shared(items):
        for text in items:
            Frame(text).deflated(compression.WINDOW_BITS)

    def plain(items):
        for text in items:
            Frame(text)

    def stream(items):
        context = compression.compressor(compression.WINDOW_BITS)
        for text in items:
            compression.text_frame(
                compression.deflate(text.encode(), compression.WINDOW_BITS, context), compressed=True
            )

    def size(items) -> int:
        return sum(len(Frame(t).plain) for t in items)

    def as_stream(items, window_bits=compression.WINDOW_BITS, mem_level=compression.MEM_LEVEL) -> float:
        """Their size compressed as one stream (context takeover), over their plain size."""
        context = zlib.compressobj(compression.LEVEL, zlib.DEFLATED, -window_bits, mem_level)
        frames = (compression.deflate(t.encode(), window_bits, context) for t in items)
        return round(sum(len(compression.text_frame(f, compressed=True)) for f in frames) / size(items), 3)

    def compressor_kib(window_bits=compression.WINDOW_BITS, mem_level=compression.MEM_LEVEL) -> float:
        held = []
        sample = "".join(catch_up_texts[:60]).encode()  # more than the window: every buffer used
        before = kib(os.getpid())
        for _ in range(200):
            c = zlib.compressobj(compression.LEVEL, zlib.DEFLATED, -window_bits, mem_level)
            compression.deflate(sample, window_bits, c)
            held.append(c)
        return round((kib(os.getpid()) - before) / len(held), 1)

    return {
        "live_frames": len(texts),
        "framing_only_us_per_frame": per_frame(plain, texts),
        "deflate_on_its_own_us_per_frame": per_frame(shared, texts),
        "deflate_as_catch_up_stream_us_per_frame": per_frame(stream, catch_up_texts),
        "live_frames_deflated_to": round(
            sum(len(Frame(t).deflated(compression.WINDOW_BITS)) for t in texts) / size(texts), 3
        ),
        # What compressing each connection's live frames as one stream would give.
        "live_frames_deflated_as_stream_to": as_stream(texts),
        "catch_up_frames_deflated_as_stream_to": as_stream(catch_up_texts),
        "catch_up_as_stream_with_zlib_defaults_to": as_stream(catch_up_texts, 15, 8),
        "catch_up_compressor_kib": compressor_kib(),
        "compressor_with_zlib_defaults_kib": compressor_kib(15, 8),
    }


def catch_up_texts(setup) -> list[str]:
    from conversations.changelog import change_event
    from conversations.models import Change

    conversation_id, last, _ = setup["history"]
    changes = Change.objects.filter(conversation_id=conversation_id, seq__gt=last - 500).order_by("seq")
    return [change_event(c).text() for c in changes]


# ---------------------------------------------------------------------------


def summarize(results: list[dict], key: str) -> dict:
    out = {}
    for mode in MODES:
        values = [r[key] for r in results if r["mode"] == mode]
        out[mode] = median(values)
    if out["plain"] and out["deflate"] is not None:
        out["deflate_to_plain"] = round(out["deflate"] / out["plain"], 3)
    return out


async def measure(setup, args) -> dict:
    env = {**product.server_env(args), "WS_COMPRESSION": "1"}
    server = loadgen.start_servers(1, "realtime_sync.asgi:application", env, args)[0]
    result: dict = {}
    try:
        live = []
        for i in range(args.runs):
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                log(f"live run {i + 1}, {mode}")
                keep = i == 0 and mode == "plain"
                live.append(await live_run(server, setup, args, mode, f"{mode}{i}", keep_texts=keep))
                log(
                    f"  {live[-1]['frames_received']} frames, {live[-1]['bytes_received']} bytes, "
                    f"{live[-1]['server_us_per_frame']} us/frame"
                )
        texts = next(r.pop("_texts") for r in live if "_texts" in r)
        result["live"] = {
            "bytes_per_frame": summarize(live, "bytes_per_frame"),
            "bytes_received": summarize(live, "bytes_received"),
            "bytes_sent_by_clients": summarize(live, "bytes_sent_by_clients"),
            "frames_received": summarize(live, "frames_received"),
            "server_us_per_frame": summarize(live, "server_us_per_frame"),
            "runs": live,
        }
        catch = []
        for i in range(args.catch_up_runs):
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                catch.append({"mode": mode, **await catch_up(server, setup, args, mode)})
                log(f"catch-up {mode}: {catch[-1]['bytes_received']} bytes, {catch[-1]['server_cpu_ms']} ms CPU")
        result["catch_up"] = {
            "changes": args.catch_up,
            "bytes_received": summarize(catch, "bytes_received"),
            "server_cpu_ms": summarize(catch, "server_cpu_ms"),
            "sync_to_ok_ms": summarize(catch, "sync_to_ok_ms"),
            "runs": catch,
        }
    finally:
        loadgen.stop_servers([server])
    if args.memory_connections:
        result["memory"] = {}
        for mode in MODES:
            log(f"memory, {mode}: {args.memory_connections} connections on a fresh server")
            result["memory"][mode] = await memory(setup, env, args, mode)
    result["in_process"] = await asyncio.to_thread(micro, texts, await asyncio.to_thread(catch_up_texts, setup))
    return result


def main() -> int:
    args = arguments()
    loadgen.exit_on_signals()
    started = time.time()
    budget = 600 + args.runs * 2 * (args.duration + 90) + args.catch_up_runs * 60 + args.memory_connections * 0.5
    result: dict = {}
    with Watchdog(budget, []):
        busy = loadgen.machine_busy_seconds()
        time.sleep(1.0)
        background = round(loadgen.machine_busy_seconds() - busy, 2)
        postgres_started = product.postmaster_started(args)
        try:
            setup = prepare(args)
            result = asyncio.run(measure(setup, args))
        finally:
            try:
                product.drop_database(args)
                loadgen.flush_redis(args)
            except Exception as error:
                log(f"clean-up failed: {error}")
    from gateway import compression

    config = {
        "benchmark": "compression",
        **{k: getattr(args, k) for k in ("runs", "members", "actors", "rate", "duration", "catch_up", "seed")},
        "catch_up_runs": args.catch_up_runs,
        "memory_connections": args.memory_connections,
        "window_bits": compression.WINDOW_BITS,
        "mem_level": compression.MEM_LEVEL,
        "min_bytes": compression.MIN_BYTES,
        "code": loadgen.code_identity(ROOT),
    }
    result = {
        "config": config,
        **result,
        "background_busy_cores": background,
        "postgres_restarted_during_run": product.postmaster_started(args) != postgres_started,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
    }
    loadgen.emit(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
