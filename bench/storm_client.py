"""The storm benchmark's devices: many WebSocket connections in one asyncio process.

A `Device` connects, waits for `hello`, sends `sync` with its stored cursors and waits
for the `ok`: it is then *live*. The socket is opened through the Python client's
`Connection` (clients/python: the bearer token, `hello`, a refusal before it), which
then detaches: the device's own reader reads the socket from there on, `sync`'s
reply included (the catch-up events that come before it are the device's to apply). It keeps, per conversation, the highest seq it has
applied in order (its cursor) and counts every event that is a duplicate (seq at or
below the cursor) or arrives out of order (seq past cursor + 1). An `overloaded` error
followed by close 4503 before `hello` is a refusal: the device waits the server's
`details.retry_after` (without one: exponential backoff with full jitter from 0.5 s)
and tries again. A handshake that fails (refused, reset, timed out, no `hello`) is
retried the same way. Every loop is bounded by a deadline.

Frames the benchmark does not need (presence, receipts, typing) are counted from
their first bytes and never decoded, to keep the client's CPU low.

Everything targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import websockets
from realtime_sync_client import Connection, ConnectionClosed

HOST = "127.0.0.1"
PRESENCE_PREFIX = '{"type":"event","kind":"presence.updated"'
STATE_PREFIXES = ('{"type":"event","kind":"receipts.updated"', '{"type":"event","kind":"typing"')
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 20.0
MAX_SEND_ATTEMPTS = 30  # a send refused with rate_limited is tried again, at most this many times
# websockets.connect options: no compression, proxy or library pings (the protocol
# has its own heartbeats), a bounded close.
CONNECT_OPTIONS = {"compression": None, "proxy": None, "ping_interval": None, "close_timeout": 2}
NO_CLOSE_FRAME = 1006  # what websockets reports when the connection ended without a close frame


def backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, first * 2^attempt)]."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt))


@dataclass
class Tally:
    """What all devices of one phase saw."""

    attempts: int = 0
    handshake_failures: dict = field(default_factory=dict)  # exception/cause -> count
    refused_4503: int = 0
    overloaded_errors: int = 0
    retry_after_hints: list = field(default_factory=list)
    other_refusals: dict = field(default_factory=dict)  # close code before hello -> count
    sync_failures: dict = field(default_factory=dict)
    gave_up: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    resets: dict = field(default_factory=dict)
    presence_frames: int = 0
    state_frames: int = 0
    log_events: int = 0
    server_closed: list = field(default_factory=list)  # (device, code, monotonic time)
    reconnects: int = 0
    cursor_mismatches: int = 0
    devices: int = 0  # devices that used this tally (set by the storm)

    def count(self, table: dict, key) -> None:
        table[key] = table.get(key, 0) + 1

    def summary(self) -> dict:
        hints = sorted(self.retry_after_hints)
        return {
            "connect_attempts": self.attempts,
            "retries": self.attempts - self.devices if self.devices else None,
            "handshake_failures": sum(self.handshake_failures.values()),
            "handshake_failures_by_cause": self.handshake_failures,
            "refused_4503": self.refused_4503,
            "overloaded_errors": self.overloaded_errors,
            "retry_after_s": {
                "count": len(hints),
                "min": hints[0] if hints else None,
                "max": hints[-1] if hints else None,
            },
            "other_refusals_by_close_code": self.other_refusals,
            "sync_failures": self.sync_failures,
            "gave_up": self.gave_up,
            "server_closed_connections": len(self.server_closed),
            "server_close_codes": _codes(self.server_closed),
            "reconnects_after_server_close": self.reconnects,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "resets": self.resets,
            "log_events_received": self.log_events,
            "presence_frames_received": self.presence_frames,
            "receipt_and_typing_frames_received": self.state_frames,
            "sync_ok_cursor_ahead_of_device": self.cursor_mismatches,
        }


def _codes(closed) -> dict:
    out = {}
    for _, code, _ in closed:
        out[str(code)] = out.get(str(code), 0) + 1
    return out


class Refusal(Exception):
    def __init__(self, code, retry_after=None):
        super().__init__(f"closed with {code} before hello")
        self.code = code
        self.retry_after = retry_after


class Device:
    """One device: its token, its server, its conversations and what it has applied."""

    def __init__(self, index: int, token: str, port: int, conversations: list[int], *, initial_cursor: int = 1):
        self.index = index
        self.token = token
        self.port = port
        self.conversations = conversations
        # The last seq applied in order, per conversation (the setup's conversation.created is seq 1).
        self.cursors: dict[int, int] = {c: initial_cursor for c in conversations}
        self.ahead: dict[int, set] = {}  # seqs received past cursor + 1 (out of order), per conversation
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.tally: Tally | None = None
        self.live = False
        self.live_at: float | None = None  # monotonic
        self.complete_at: float | None = None
        self.targets: dict[int, int] | None = None
        self.behind = 0  # conversations whose cursor is below its target
        self.closing = False
        self.auto_reconnect = False
        self.deadline = 0.0
        self.waiters: dict = {}
        self.refs = 0
        self.last_sent = 0.0
        self.heartbeat_interval = 25.0
        self.origin: str | None = None  # baseline chat: an Origin header, no protocol

    # -- connecting ---------------------------------------------------------

    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws/v1/"

    async def connect_live(self, tally: Tally, deadline: float, *, timeout: float, cursors: bool = True) -> bool:
        """Until `deadline`: connect, get hello, sync, get ok. True once live."""
        self.tally = tally
        self.deadline = deadline
        attempt = 0
        while time.monotonic() < deadline:
            tally.attempts += 1
            try:
                await self._attempt(timeout, cursors)
                self.live = True
                self.live_at = time.monotonic()
                self._check_complete()
                return True
            except Refusal as refusal:
                if refusal.code == 4503:
                    tally.refused_4503 += 1
                else:
                    tally.count(tally.other_refusals, str(refusal.code))
                    if refusal.code in (4401, 4403, 4410):
                        break  # the protocol says: do not retry
                wait = refusal.retry_after if refusal.retry_after is not None else backoff(attempt)
            except SyncFailed as failure:
                tally.count(tally.sync_failures, failure.args[0])
                wait = backoff(attempt)
            except Exception as error:  # noqa: BLE001 (any failure to open counts and is retried)
                tally.count(tally.handshake_failures, _cause(error))
                wait = backoff(attempt)
            await self._abort()
            attempt += 1
            wait = min(wait, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
        tally.gave_up += 1
        return False

    async def _open(self, timeout: float, *, max_size: int, **options) -> dict:
        """Open the socket through `Connection` (bounded open and close) and wait
        for `hello`; then detach, so that the device's own reader reads the socket.
        A close before `hello` raises `Refusal` (counting an `overloaded` error
        and its hint), no `hello` in time raises TimeoutError."""
        self.closing = False
        connection = Connection(
            self.url(),
            token=self.token,
            max_size=max_size,
            open_timeout=timeout,  # the opening handshake, then hello
            connect_options={**CONNECT_OPTIONS, **options},
        )
        try:
            hello = await connection.open()
        except ConnectionClosed as closed:
            if isinstance(closed.__cause__, TimeoutError):
                raise TimeoutError(f"no hello within {timeout:g} s") from None
            code = None if closed.code == NO_CLOSE_FRAME else closed.code
            if closed.error is not None and closed.error.get("code") == "overloaded":
                self.tally.overloaded_errors += 1
                hint = closed.retry_after
                if hint is not None:
                    self.tally.retry_after_hints.append(hint)
                raise Refusal(code if code is not None else 4503, hint) from None
            raise Refusal(code) from None
        finally:
            self.ws = connection.ws  # open or not: _abort() drops it
        self._early(await connection.detach())
        self.heartbeat_interval = float(hello.get("heartbeat_interval") or 25.0)
        return hello

    def _early(self, frames: list) -> None:
        """Frames received between `hello` and the detach: counted and applied as
        the reader would."""
        tally = self.tally
        for frame in frames:
            kind, what = frame.get("type"), frame.get("kind")
            if kind == "event" and what == "presence.updated":
                tally.presence_frames += 1
            elif kind == "event" and what in ("receipts.updated", "typing"):
                tally.state_frames += 1
            elif kind == "event" and frame.get("seq") is not None:
                tally.log_events += 1
                self.apply(frame.get("conversation_id"), frame["seq"])
            elif kind == "reset":
                tally.count(tally.resets, frame.get("reason"))
                self.reset(frame["conversation_id"], frame["last_seq"])

    async def _attempt(self, timeout: float, cursors: bool) -> None:
        await self._open(timeout, max_size=2**24, max_queue=64)
        self.reader = asyncio.create_task(self._read())
        ref = self.next_ref()
        body = {"type": "sync", "ref": ref}
        if cursors:
            body["cursors"] = {str(c): s for c, s in self.cursors.items()}
        reply = await self.request(body, ref, timeout)
        if reply.get("type") != "ok":
            raise SyncFailed(f"sync answered {reply.get('type')}/{reply.get('code')}")
        for key, value in (reply.get("result") or {}).get("cursors", {}).items():
            # The server says it sent up to `value`; events come before the ok, so we must have it.
            if self.cursors.get(int(key), 0) < value:
                self.tally.cursor_mismatches += 1

    def next_ref(self) -> str:
        self.refs += 1
        return f"d{self.index}-{self.refs}"

    async def request(self, frame: dict, ref: str, timeout: float) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.waiters[ref] = future
        try:
            await self.ws.send(json.dumps(frame))
            self.last_sent = time.monotonic()
            return await asyncio.wait_for(future, timeout)
        except websockets.ConnectionClosed:
            raise SyncFailed("closed during sync") from None
        except TimeoutError:
            raise SyncFailed("no answer to sync") from None
        finally:
            self.waiters.pop(ref, None)

    # -- receiving ----------------------------------------------------------

    async def _read(self) -> None:
        tally = self.tally
        ws = self.ws
        try:
            async for text in ws:
                if text.startswith(PRESENCE_PREFIX):
                    tally.presence_frames += 1
                    continue
                if text.startswith(STATE_PREFIXES):
                    tally.state_frames += 1
                    continue
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "event":
                    seq = frame.get("seq")
                    if seq is not None:
                        tally.log_events += 1
                        self.apply(frame.get("conversation_id"), seq)
                elif kind == "reset":
                    tally.count(tally.resets, frame.get("reason"))
                    self.reset(frame["conversation_id"], frame["last_seq"])
                elif kind in ("ok", "error"):
                    waiter = self.waiters.get(frame.get("ref"))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if ws is self.ws and not self.closing:
                self.live = False
                code = ws.close_code
                tally.server_closed.append((self.index, code, time.monotonic()))
                for waiter in self.waiters.values():
                    if not waiter.done():
                        waiter.set_result({"type": "closed", "code": code})
                if self.auto_reconnect and time.monotonic() < self.deadline:
                    asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        self.tally.reconnects += 1
        await asyncio.sleep(backoff(0))
        await self.connect_live(self.tally, self.deadline, timeout=30.0)

    def apply(self, conversation_id: int, seq: int) -> None:
        cursor = self.cursors.get(conversation_id)
        if cursor is None:
            return  # not one of the device's conversations (none are made during a run)
        if seq <= cursor:
            self.tally.duplicates += 1
            return
        if seq > cursor + 1:
            self.tally.out_of_order += 1
            self.ahead.setdefault(conversation_id, set()).add(seq)
            return
        ahead = self.ahead.get(conversation_id)
        while ahead and seq + 1 in ahead:
            ahead.discard(seq + 1)
            seq += 1
        self.cursors[conversation_id] = seq
        targets = self.targets
        if targets is not None and cursor < targets.get(conversation_id, 0) <= seq:
            self.behind -= 1
            self._check_complete()

    def reset(self, conversation_id: int, last_seq: int) -> None:
        if conversation_id in self.cursors:
            self.cursors[conversation_id] = max(self.cursors[conversation_id], last_seq)

    def set_targets(self, targets: dict[int, int]) -> None:
        """Complete = every conversation's cursor at or past its target (and live)."""
        self.targets = targets
        self.complete_at = None
        self.behind = sum(1 for c, s in self.cursors.items() if s < targets.get(c, 0))
        self._check_complete()

    def _check_complete(self) -> None:
        if self.targets is not None and self.complete_at is None and self.behind <= 0 and self.live:
            self.complete_at = time.monotonic()

    def missing(self, last_seqs: dict[int, int]) -> int:
        """Changes of its conversations this device does not have (up to `last_seqs`)."""
        return sum(max(0, last_seqs.get(c, s) - s) for c, s in self.cursors.items())

    # -- heartbeat and closing -----------------------------------------------

    async def ping(self) -> None:
        if self.live and self.ws is not None and not self.closing:
            try:
                await self.ws.send('{"type":"ping"}')
                self.last_sent = time.monotonic()
            except websockets.ConnectionClosed:
                pass

    async def drop(self) -> None:
        """Close abruptly: no close frame, the socket just goes (the server sees 1006)."""
        self.closing = True
        self.live = False
        ws = self.ws
        if ws is not None:
            ws.transport.abort()
        await self._stop_reader()

    async def close(self) -> None:
        self.closing = True
        self.live = False
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:  # noqa: BLE001
                self.ws.transport.abort()
        await self._stop_reader()

    async def _abort(self) -> None:
        self.closing = True
        if self.ws is not None:
            self.ws.transport.abort()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self.reader is not None:
            try:
                await asyncio.wait_for(self.reader, 5)
            except Exception:  # noqa: BLE001
                self.reader.cancel()
            self.reader = None


class SyncFailed(Exception):
    pass


def _cause(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, websockets.InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, websockets.ConnectionClosed):
        return "closed during handshake"
    cause = error.__cause__ or error.__context__
    detail = f" ({type(cause).__name__})" if cause is not None else ""
    return f"{type(error).__name__}{detail}"


class Sender(Device):
    """A device of the sender user: it never syncs (so it receives next to nothing)
    and sends messages, remembering each acknowledged (conversation, seq)."""

    def __init__(self, index, token, port):
        super().__init__(index, token, port, [])
        self.pending: dict[str, tuple] = {}  # ref -> (conversation, first sent at, frame, attempt)
        self.acked: list[tuple] = []  # (conversation, seq, ack time monotonic, first sent at)
        self.errors: dict = {}  # final errors by code (not retried)
        self.retries = 0  # sends refused with rate_limited and sent again
        self.sent = 0
        self._tasks: set = set()
        self.resends_scheduled = 0

    def outstanding(self) -> int:
        """Sends not answered yet, those waiting to be sent again included."""
        return len(self.pending) + self.resends_scheduled

    async def connect_sender(self, tally: Tally, deadline: float, timeout: float) -> bool:
        self.tally = tally
        self.deadline = deadline
        await self._open(timeout, max_size=2**24)
        self.reader = asyncio.create_task(self._read_sender())
        self.live = True
        self.last_sent = time.monotonic()
        return True

    async def _read_sender(self) -> None:
        ws = self.ws
        try:
            async for text in ws:
                if text.startswith('{"type":"ok"') or text.startswith('{"type":"error"'):
                    frame = json.loads(text)
                    entry = self.pending.pop(frame.get("ref"), None)
                    if entry is None:
                        continue
                    if frame["type"] == "ok":
                        result = frame.get("result") or {}
                        self.acked.append(
                            (result.get("conversation_id"), result.get("seq"), time.monotonic(), entry[1])
                        )
                    elif frame.get("code") == "rate_limited" and entry[3] < MAX_SEND_ATTEMPTS:
                        # As the protocol asks: the same send (same client_msg_id) after the hint.
                        hint = (frame.get("details") or {}).get("retry_after")
                        wait = hint if isinstance(hint, (int, float)) else backoff(entry[3])
                        self.retries += 1
                        self.resends_scheduled += 1
                        asyncio.get_running_loop().call_later(wait, self._resend, entry)
                    else:
                        self.errors[frame.get("code")] = self.errors.get(frame.get("code"), 0) + 1
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.live = False
                self.tally.server_closed.append((f"sender {self.index}", ws.close_code, time.monotonic()))

    async def send_message(self, conversation_id: int, tag: str) -> None:
        self.sent += 1
        self.refs += 1
        frame = {
            "type": "send",
            "conversation_id": conversation_id,
            "client_msg_id": f"storm-{tag}-{self.index}-{self.refs}",
            "body": f"{tag} {self.index}-{self.refs} {time.time_ns()}",
        }
        await self._send((conversation_id, time.monotonic(), frame, 0))

    def _resend(self, entry: tuple) -> None:
        self.resends_scheduled -= 1
        if not self.closing:
            conversation_id, first, frame, attempt = entry
            self._spawn(self._send((conversation_id, first, frame, attempt + 1)))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, entry: tuple) -> None:
        ref = self.next_ref()
        self.pending[ref] = entry
        entry[2]["ref"] = ref
        try:
            await self.ws.send(json.dumps(entry[2]))
            self.last_sent = time.monotonic()
        except websockets.ConnectionClosed:
            self.errors["connection closed"] = self.errors.get("connection closed", 0) + 1
            self.pending.pop(ref, None)


async def heartbeats(devices, stop: asyncio.Event) -> None:
    """Send `ping` on every live device at least every heartbeat_interval (the
    server closes a silent connection after heartbeat_timeout), spread over time."""
    while not stop.is_set():
        now = time.monotonic()
        due = [d for d in devices if d.live and now - d.last_sent > d.heartbeat_interval * 0.8]
        for device in due:
            await device.ping()
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
