"""A real server process and real WebSocket clients for gateway tests.

`ServerProcess` runs Daphne on a free port against the test database and the
test Redis, exactly as in production; on a fresh machine, against the SQLite
test database file, with an in-memory channel layer of its own. `Device` is the
Python client's `Connection` (clients/python) keeping every frame it receives,
so tests can assert on what reached which device; tests of reconnection use the
client's `Client` itself.
"""

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from django.conf import settings
from realtime_sync_client import Connection, ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
FRAME_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database as a DATABASE_URL for another process."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # The file of the test database (test_settings names one: pytest-django's
        # default is in memory), with the test process's locking options.
        path = urllib.parse.quote(str(Path(db["NAME"]).resolve()))
        query = urllib.parse.urlencode(
            {k: v for k, v in db.get("OPTIONS", {}).items() if k in ("timeout", "transaction_mode")}
        )
        return f"sqlite:///{path}" + (f"?{query}" if query else "")
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class ServerProcess:
    def __init__(self, **env):
        self.port = free_port()
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log_path = ROOT / f".server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/"

    def start(self) -> "ServerProcess":
        env = {
            **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
            "DJANGO_SETTINGS_MODULE": "realtime_sync.test_settings",
            "DATABASE_URL": database_url(),
            # Redis when the tests use it; without it, the in-memory layer.
            **({"REDIS_URL": settings.REDIS_URL} if settings.REDIS_URL else {}),
            "DB_POOL_MAX_SIZE": "10",
            **self.env,
        }
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop(); outlives this call)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "realtime_sync.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen in time:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, signum) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        if self.process:
            self.log.close()
            if not os.environ.get("KEEP_SERVER_LOGS"):
                self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def started_on_first_use(**env):
    """A function returning one shared ServerProcess, started on its first call (so
    a run whose tests of it are all skipped starts none) and stopped on exit."""
    servers: list[ServerProcess] = []

    def server() -> ServerProcess:
        if not servers:
            servers.append(ServerProcess(**env).start())
        return servers[0]

    try:
        yield server
    finally:
        for started in servers:
            started.stop()


# A refused or closed connection: `.code` is the close code (Daphne sends no reason).
Closed = ConnectionClosed


class Device(Connection):
    """One device's connection, built on the Python client's `Connection`,
    keeping every frame it receives so tests can assert on what reached which
    device. Its `request` consumes the frames before the reply from the inbox
    (they stay in `frames`), so `next_frame` goes on after the reply."""

    _refs = itertools.count(1)

    def __init__(self, url: str, token: str | None = None, *, name: str = "", headers=None, query: str = ""):
        headers = dict(headers or {})
        use_header = bool(token) and "Authorization" not in headers and not query
        super().__init__(url + (f"?{query}" if query else ""), token=token if use_header else None, headers=headers)
        self.token = token
        self.name = name
        self.frames: list[dict] = []  # everything received, in order

    def frame_received(self, frame: dict) -> None:
        self.frames.append(frame)
        super().frame_received(frame)

    async def connect(self, *, expect_hello: bool = True) -> "Device":
        await self.open(wait_for_hello=False)
        if expect_hello:
            self.hello = await self.next_frame()
            assert self.hello["type"] == "hello", self.hello
        return self

    async def next_frame(self, timeout: float = FRAME_TIMEOUT) -> dict:
        return await self.recv(timeout)

    async def wait_for(self, predicate, timeout: float = FRAME_TIMEOUT) -> dict:
        """The next frame matching `predicate` (frames before it stay in self.frames)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next_frame(max(deadline - time.monotonic(), 0.001))
            if predicate(frame):
                return frame

    async def received(self, predicate, timeout: float = FRAME_TIMEOUT) -> dict:
        """The first frame ever received that matches `predicate`, waiting for it if need be."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        return await self.wait_for(predicate, timeout)

    async def request(self, type_: str, timeout: float = FRAME_TIMEOUT, **fields) -> dict:
        """Send a request and return its reply (`ok`, `pong` or `error`)."""
        ref = f"{self.name or 'r'}-{next(self._refs)}"
        await self.send({"type": type_, "ref": ref, **fields})
        return await self.wait_for(lambda f: f.get("ref") == ref and f["type"] in ("ok", "pong", "error"), timeout)

    async def wait_closed(self, timeout: float = FRAME_TIMEOUT) -> int | None:
        return await super().wait_closed(timeout)

    def events(self, conversation_id=None) -> list[dict]:
        return [
            f
            for f in self.frames
            if f["type"] == "event" and (conversation_id is None or f.get("conversation_id") == conversation_id)
        ]

    def seqs(self, conversation_id) -> list[int]:
        return [f["seq"] for f in self.events(conversation_id) if "seq" in f]


class LayerSpy:
    """Every log event published to a conversation's group, taken from the
    channel layer itself (through Redis: an in-memory layer is this process's own)."""

    def __init__(self, conversation_id: int):
        from core.events import conversation_group

        self.group = conversation_group(conversation_id)
        self.messages: list[dict] = []

    async def __aenter__(self):
        from channels.layers import get_channel_layer

        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        return self

    async def __aexit__(self, *exc):
        await self.layer.group_discard(self.group, self.channel)

    async def _take(self, timeout: float) -> None:
        message = await asyncio.wait_for(self.layer.receive(self.channel), timeout)
        if message.get("seq") is not None:  # log events only, not receipts or typing
            self.messages.append(message)

    async def until_seq(self, seq: int, timeout: float = FRAME_TIMEOUT) -> None:
        while not any(m["seq"] == seq for m in self.messages):
            await self._take(timeout)

    async def drain(self, quiet: float) -> None:
        """Take what still arrives, until nothing has for `quiet` seconds: a
        duplicate published late would show up here."""
        try:
            while True:
                await self._take(quiet)
        except TimeoutError:
            pass

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]
