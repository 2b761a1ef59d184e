"""A device that stays connected: reconnects, resumes from its cursors, and
never loses or repeats a change or a send.

The moving parts, each following docs/protocol.md:

* a run loop that connects, waits for `hello`, sends `sync` with the stored
  cursors, and after any close waits (backoff with jitter, or the server's
  `retry_after`) and connects again, unless the close code forbids it
  (`close_codes.FINAL`);
* a dispatcher that applies pushed frames in the order received, one at a
  time: it drops log events at or below the conversation's cursor (a `sync`
  after a reconnect may send again what an earlier connection delivered),
  calls the application, then moves and saves the cursor;
* an outbox of requests: each stays until it has a reply, is sent on whatever
  connection is up (a request made offline waits for one), at most
  `max_in_flight` at once (4: below the server's queue of 8 per connection,
  beside the client's own sync and pings), writes of messages one at a time
  per conversation so they are written in the order made, and is sent
  again, unchanged, on the next connection when its reply never came. A
  `send` keeps its `client_msg_id`, so a retry of one that had committed is
  answered `duplicate: true` and creates nothing;
* a heartbeat (a `ping` every `heartbeat_interval`; no `pong` within
  `heartbeat_timeout` drops the connection) and typing refreshes.

Callbacks may be plain functions or coroutines; the dispatcher awaits each
before the next frame, so they see changes in order. A callback may make
requests (they are answered while it waits). An exception in a callback is
logged and does not stop the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import websockets

from . import close_codes
from .backoff import Backoff
from .connection import Connection
from .cursors import CursorStore, MemoryCursorStore
from .errors import ClientStopped, ConnectionClosed, ConnectionLost, RequestError
from .events import (
    JSON,
    FetchResult,
    Hello,
    LogEvent,
    Message,
    Presence,
    ReceiptCursors,
    ReceiptsUpdated,
    Reset,
    SendResult,
    SyncResult,
    Typing,
)

logger = logging.getLogger("realtime_sync_client")

T = TypeVar("T")
Callback = Callable[[T], Awaitable[None] | None]
#: Request errors answered by sending the same request again later, not by failing it.
RETRIED_ERRORS = frozenset({"rate_limited", "unavailable"})
# Writes of messages: one at a time per conversation, in the order made (_pump).
ORDERED = frozenset({"send", "edit", "delete"})


@dataclass(eq=False)
class _Request(Generic[T]):
    type: str
    fields: dict[str, Any]
    parse: Callable[[JSON], T]
    future: asyncio.Future[T]
    retry: bool = True  # sent again on the next connection if unanswered
    sent_on: Connection | None = None
    not_before: float = 0.0


@dataclass(frozen=True)
class _SyncDone:
    connection: Connection
    result: SyncResult


@dataclass
class _Callbacks:
    on_event: Callback[LogEvent] | None = None
    on_reset: Callback[Reset] | None = None
    on_receipts: Callback[ReceiptsUpdated] | None = None
    on_presence: Callback[Presence] | None = None
    on_typing: Callback[Typing] | None = None
    on_sync: Callback[SyncResult] | None = None
    on_connected: Callback[Hello] | None = None
    on_disconnected: Callable[[int | None, float | None], Awaitable[None] | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class Client:
    """A reconnecting device. Use as `async with Client(url, token=...) as client:`,
    or call `start()` and `close()`.

    url: the WebSocket endpoint, e.g. "ws://localhost:8000/ws/v1/".
    token / session_id / headers: how to authenticate (docs/protocol.md §2).
    cursor_store: where cursors persist (default: memory only).
    on_event(LogEvent): every change of a followed conversation, once, in seq order.
    on_reset(Reset): reload the conversation over REST; later events continue from `last_seq`.
    on_receipts(ReceiptsUpdated), on_presence(Presence), on_typing(Typing): state events.
    on_sync(SyncResult): after each `sync`; `gone` conversations are already dropped.
    on_connected(Hello): after each successful connection and its `sync`.
    on_disconnected(code, retry_in): after each close; `retry_in` is None when the client stops.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        session_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        cursor_store: CursorStore | None = None,
        backoff: Backoff | None = None,
        max_in_flight: int = 4,
        heartbeat: bool = True,
        rng: random.Random | None = None,
        on_event: Callback[LogEvent] | None = None,
        on_reset: Callback[Reset] | None = None,
        on_receipts: Callback[ReceiptsUpdated] | None = None,
        on_presence: Callback[Presence] | None = None,
        on_typing: Callback[Typing] | None = None,
        on_sync: Callback[SyncResult] | None = None,
        on_connected: Callback[Hello] | None = None,
        on_disconnected: Callable[[int | None, float | None], Awaitable[None] | None] | None = None,
    ):
        if token is None and session_id is None and not headers:
            raise ValueError("Client needs a token, a session_id or headers that authenticate")
        self.url = url
        self._auth: dict[str, Any] = {"token": token, "session_id": session_id, "headers": headers}
        self.cursor_store: CursorStore = cursor_store if cursor_store is not None else MemoryCursorStore()
        self.backoff = backoff or Backoff()
        self.max_in_flight = max_in_flight
        self.heartbeat = heartbeat
        self._rng = rng or random.Random()
        self.on_event = on_event
        self.on_reset = on_reset
        self.on_receipts = on_receipts
        self.on_presence = on_presence
        self.on_typing = on_typing
        self.on_sync = on_sync
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected

        #: The `hello` of the current (or last) connection.
        self.hello: Hello | None = None
        #: Connection attempts made so far (for observability and tests).
        self.attempts = 0
        self._cursors: dict[int, int] = self.cursor_store.load()
        self._outbox: list[_Request[Any]] = []
        self._inbound: asyncio.Queue[JSON | _SyncDone] = asyncio.Queue()
        self._connection: Connection | None = None
        self._wake = asyncio.Event()  # the outbox has work, or a slot freed
        self._connected = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._stopped: ClientStopped | None = None
        self._first: asyncio.Future[Hello] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._presence_status: str | None = None
        self._presence_subscription: list[int] | None = None
        self._typing: dict[int, asyncio.Task[None]] = {}
        self._exchanges: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._cursor_moved = asyncio.Event()  # set and replaced on every cursor move

    # Life cycle

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> Hello:
        """Start connecting; return the first connection's `hello` once its `sync`
        is answered. Connection failures are retried; a final refusal (4401,
        4403, 4410) raises ClientStopped."""
        if self._first is None:
            self._first = asyncio.get_running_loop().create_future()
            self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._dispatch())]
        return await asyncio.shield(self._first)

    async def close(self) -> None:
        """Close the connection and stop; requests still waiting fail with ClientStopped."""
        self._stop(ClientStopped(None))
        if self._connection is not None:
            await self._connection.close()
        for task in list(self._typing.values()):
            task.cancel()
        runner = self._tasks[0] if self._tasks else None
        if runner is not None:
            await asyncio.gather(runner, return_exceptions=True)
        await self._drain_inbound()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain_inbound(self) -> None:
        """Let the dispatcher apply what was received before closing."""
        if self._tasks and not self._tasks[1].done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbound.join(), 5)

    def reconnect_now(self) -> None:
        """Skip the current backoff wait (e.g. when the network is known to be back)."""
        self._retry_now.set()

    @property
    def connection(self) -> Connection | None:
        """The current connection, while one is up."""
        return self._connection

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stopped(self) -> ClientStopped | None:
        return self._stopped

    @property
    def cursors(self) -> dict[int, int]:
        """Per conversation, the seq of the last change applied (a copy)."""
        return dict(self._cursors)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # The run loop

    async def _run(self) -> None:
        failures = 0
        while self._stopped is None:
            self.attempts += 1
            connection = Connection(self.url, on_frame=self._inbound.put_nowait, **self._auth)
            retry_after: float | None = None
            code: int | None = None
            synced = False
            try:
                hello = await connection.open()
            except ConnectionClosed as refused:
                code, retry_after = refused.code, refused.retry_after
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as error:
                logger.info("connecting to %s failed: %s", self.url, error)
            else:
                assert hello is not None
                if self._stopped is not None:  # closed while this connection was opening
                    await connection.close()
                    break
                synced = await self._session(connection, Hello.from_frame(hello))
                code = connection.close_code
            if synced:
                failures = 0
            if self._stopped is not None:
                break
            if not close_codes.reconnects(code):
                self._stop(ClientStopped(code))
                await _call(self.on_disconnected, code, None)
                break
            delay = retry_after if retry_after is not None else self.backoff.delay(failures, self._rng)
            failures += 1
            await _call(self.on_disconnected, code, delay)
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)

    async def _session(self, connection: Connection, hello: Hello) -> bool:
        """Run one connection until it closes; whether its `sync` succeeded."""
        self.hello = hello
        self._connection = connection
        helpers: list[asyncio.Task[None]] = []
        try:
            try:
                reply = await connection.request("sync", cursors={str(k): v for k, v in self._cursors.items()})
            except ConnectionClosed:
                return False
            if reply["type"] != "ok":
                logger.warning("sync refused: %s", reply)
                connection.abort()
                await connection.wait_closed()
                return False
            result = SyncResult.from_result(reply["result"])
            self._inbound.put_nowait(_SyncDone(connection, result))
            await self._restore(connection)
            self._connected.set()
            if self._first is not None and not self._first.done():
                self._first.set_result(hello)
            await _call(self.on_connected, hello)
            helpers.append(asyncio.create_task(self._pump(connection)))
            if self.heartbeat:
                helpers.append(asyncio.create_task(self._beat(connection, hello)))
            await connection.wait_closed()
            return True
        finally:
            self._connected.clear()
            self._connection = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._requeue(connection)

    async def _restore(self, connection: Connection) -> None:
        """What belongs to a connection, not the device: set it again (docs/protocol.md §9)."""
        with contextlib.suppress(ConnectionClosed):
            if self._presence_status not in (None, "online"):
                await connection.request("presence", status=self._presence_status)
            if self._presence_subscription is not None:
                reply = await connection.request("presence.subscribe", user_ids=self._presence_subscription)
                if reply["type"] == "ok":
                    for entry in reply["result"]["presence"]:
                        self._inbound.put_nowait({"type": "event", "kind": "presence.updated", "payload": entry})

    def _requeue(self, connection: Connection) -> None:
        """After a close: unanswered requests go again on the next connection."""
        for request in list(self._outbox):
            if request.sent_on is connection:
                request.sent_on = None
                if not request.retry:
                    self._finish(request, error=ConnectionLost(f"{request.type}: connection lost before the reply"))
        self._wake.set()

    def _stop(self, stopped: ClientStopped) -> None:
        if self._stopped is not None:
            return
        self._stopped = stopped
        if self._first is not None and not self._first.done():
            self._first.set_exception(stopped)
            self._first.exception()  # retrieved here: start() may never be awaited again
        for request in list(self._outbox):
            self._finish(request, error=stopped)
        self._retry_now.set()

    # The outbox

    async def _pump(self, connection: Connection) -> None:
        """Send what waits in the outbox, oldest first. Writes of messages go
        one at a time per conversation: the server may refuse a request for
        the moment (`rate_limited`), and a write sent behind a refused one
        would be written before it. So a write waiting out a hint, or for the
        next connection, holds back the later writes of its conversation."""
        slots = asyncio.Semaphore(self.max_in_flight)
        loop = asyncio.get_running_loop()
        while not connection.closed:
            self._wake.clear()
            now = loop.time()
            next_at: float | None = None
            held: set[Any] = set()  # conversations with an earlier write not answered yet
            for request in list(self._outbox):
                if request.future.done():
                    continue
                conversation = request.fields.get("conversation_id") if request.type in ORDERED else None
                if conversation is not None:
                    if conversation in held:
                        continue
                    held.add(conversation)
                if request.sent_on is not None:
                    continue
                if request.not_before > now:
                    next_at = min(next_at or request.not_before, request.not_before)
                    continue
                await slots.acquire()
                if connection.closed:
                    return
                if request.sent_on is not None or request.future.done():
                    slots.release()
                    continue
                request.sent_on = connection
                exchange = asyncio.create_task(self._exchange(connection, request, slots))
                self._exchanges.add(exchange)
                exchange.add_done_callback(self._exchanges.discard)
            timeout = None if next_at is None else max(next_at - loop.time(), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _exchange(self, connection: Connection, request: _Request[Any], slots: asyncio.Semaphore) -> None:
        try:
            reply = await connection.request(request.type, **request.fields)
        except ConnectionClosed:
            return  # _requeue sends it again on the next connection
        finally:
            slots.release()
            self._wake.set()
        if reply["type"] == "error" and reply.get("code") in RETRIED_ERRORS:
            if reply["code"] == "rate_limited":
                retry_after = (reply.get("details") or {}).get("retry_after", 1.0)
                request.not_before = asyncio.get_running_loop().time() + float(retry_after)
                request.sent_on = None
            # `unavailable`: the server is going away; it stays marked as sent on
            # this connection and goes again on the next one.
            self._wake.set()
            return
        if reply["type"] == "error":
            self._finish(request, error=RequestError(reply))
        else:
            try:
                value = request.parse(reply)
            except Exception as error:  # a reply this client cannot read
                self._finish(request, error=error)
            else:
                self._finish(request, value=value)

    def _finish(self, request: _Request[Any], *, value: Any = None, error: BaseException | None = None) -> None:
        with contextlib.suppress(ValueError):
            self._outbox.remove(request)
        if request.future.done():
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(value)

    async def _request(
        self, type_: str, fields: dict[str, Any], parse: Callable[[JSON], T], *, retry: bool = True
    ) -> T:
        if self._stopped is not None:
            raise self._stopped
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        request = _Request(type_, fields, parse, future, retry)
        future.add_done_callback(lambda _: self._finish(request))  # cancelled by the caller
        self._outbox.append(request)
        self._wake.set()
        return await future

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Requests not answered yet (queued offline, or sent and unanswered)."""
        return [(r.type, dict(r.fields)) for r in self._outbox]

    # Heartbeat

    async def _beat(self, connection: Connection, hello: Hello) -> None:
        while not connection.closed:
            await asyncio.sleep(hello.heartbeat_interval)
            try:
                await asyncio.wait_for(connection.request("ping"), hello.heartbeat_timeout)
            except TimeoutError:
                logger.info("no pong within %ss: dropping the connection", hello.heartbeat_timeout)
                connection.abort()
                return
            except ConnectionClosed:
                return

    # Applying what arrives

    async def _dispatch(self) -> None:
        while True:
            item = await self._inbound.get()
            try:
                await self._apply(item)
            except Exception:
                logger.exception("applying %r failed", item)
            finally:
                self._inbound.task_done()

    async def _apply(self, item: JSON | _SyncDone) -> None:
        if isinstance(item, _SyncDone):
            for conversation_id in item.result.gone:
                self._cursors.pop(conversation_id, None)
            if item.result.gone:
                self.cursor_store.save(self._cursors)
            await _call(self.on_sync, item.result)
            return
        kind = item.get("type")
        if kind == "event":
            await self._apply_event(item)
        elif kind == "reset":
            reset = Reset.from_frame(item)
            await _call(self.on_reset, reset)
            self._move_cursor(reset.conversation_id, reset.last_seq)
        elif kind == "error":
            logger.info("error frame from the server: %s", item)
        # Unknown frame types are skipped (docs/protocol.md §1).

    async def _apply_event(self, frame: JSON) -> None:
        kind = frame.get("kind")
        if "seq" in frame and "conversation_id" in frame:
            event = LogEvent.from_frame(frame)
            cursor = self._cursors.get(event.conversation_id)
            if cursor is not None and event.seq <= cursor:
                return  # already applied (sent again by a sync after a reconnect)
            await _call(self.on_event, event)
            self._move_cursor(event.conversation_id, event.seq)
            if (
                kind == "member.removed"
                and self.hello
                and event.payload.get("user", {}).get("id") == self.hello.user_id
            ):
                # Nothing follows our own removal; a later sync would only list it as gone.
                self._cursors.pop(event.conversation_id, None)
                self.cursor_store.save(self._cursors)
        elif kind == "receipts.updated":
            await _call(self.on_receipts, ReceiptsUpdated.from_frame(frame))
        elif kind == "presence.updated":
            await _call(self.on_presence, Presence.from_dict(frame["payload"]))
        elif kind == "typing":
            await _call(self.on_typing, Typing.from_frame(frame))

    def _move_cursor(self, conversation_id: int, seq: int) -> None:
        self._cursors[conversation_id] = seq
        self.cursor_store.save(self._cursors)
        self._cursor_moved.set()
        self._cursor_moved = asyncio.Event()

    async def until_applied(self, conversation_id: int, seq: int) -> None:
        """Wait until the change `seq` of the conversation has been applied (e.g.
        the event of one's own send, which may come after its reply)."""
        while self._cursors.get(conversation_id, -1) < seq:
            await self._cursor_moved.wait()

    # Requests

    @staticmethod
    def new_client_msg_id() -> str:
        return uuid.uuid4().hex

    async def send(
        self, conversation_id: int, body: str, *, reply_to: int | None = None, client_msg_id: str | None = None
    ) -> SendResult:
        """Send a message. Queued while offline; retried with the same
        `client_msg_id` until acknowledged, so it is stored exactly once."""
        fields: dict[str, Any] = {
            "conversation_id": conversation_id,
            "client_msg_id": client_msg_id or self.new_client_msg_id(),
            "body": body,
        }
        if reply_to is not None:
            fields["reply_to"] = reply_to
        self._stop_typing_refresh(conversation_id)  # a send ends the indicator on the server
        return await self._request("send", fields, lambda r: SendResult.from_result(r["result"]))

    async def edit(self, conversation_id: int, message_id: int, body: str, version: int) -> Message:
        """Edit a message; RequestError `version_conflict` carries `details.current_body`."""
        fields = {"conversation_id": conversation_id, "message_id": message_id, "body": body, "version": version}
        return await self._request("edit", fields, lambda r: Message.from_dict(r["result"]["message"]))

    async def delete(self, conversation_id: int, message_id: int) -> Message:
        """Delete a message; returns the tombstone."""
        fields = {"conversation_id": conversation_id, "message_id": message_id}
        return await self._request("delete", fields, lambda r: Message.from_dict(r["result"]["message"]))

    async def read(self, conversation_id: int, seq: int) -> ReceiptCursors:
        """Mark read (and delivered) up to `seq`."""
        fields = {"conversation_id": conversation_id, "seq": seq}
        return await self._request("read", fields, lambda r: ReceiptCursors.from_result(r["result"]))

    async def delivered(self, conversation_id: int, seq: int) -> ReceiptCursors:
        """Acknowledge delivery up to `seq` (cumulative)."""
        fields = {"conversation_id": conversation_id, "seq": seq}
        return await self._request("delivered", fields, lambda r: ReceiptCursors.from_result(r["result"]))

    async def fetch(self, conversation_id: int, after_seq: int = 0, limit: int | None = None) -> FetchResult:
        """A range of the change log (does not move the cursors)."""
        fields: dict[str, Any] = {"conversation_id": conversation_id, "after_seq": after_seq}
        if limit is not None:
            fields["limit"] = limit
        return await self._request("fetch", fields, lambda r: FetchResult.from_result(r["result"]))

    async def set_presence(self, status: str) -> str:
        """Set this device's status ("online", "away", "busy"); kept across reconnects."""
        self._presence_status = status
        return await self._request("presence", {"status": status}, lambda r: str(r["result"]["status"]))

    async def subscribe_presence(self, user_ids: Iterable[int]) -> list[Presence]:
        """Follow these users' presence (replaces the previous list; kept across reconnects)."""
        ids = list(user_ids)
        self._presence_subscription = ids
        return await self._request(
            "presence.subscribe",
            {"user_ids": ids},
            lambda r: [Presence.from_dict(p) for p in r["result"]["presence"]],
        )

    async def ping(self) -> str:
        """The server's time, from a `pong`."""
        return await self._request("ping", {}, lambda r: str(r["server_time"]), retry=False)

    async def start_typing(self, conversation_id: int) -> None:
        """Show this device typing, and keep the indicator alive (a new `start`
        every `typing_timeout / 2`) until `stop_typing` or a `send` there."""
        if conversation_id not in self._typing:
            self._typing[conversation_id] = asyncio.create_task(self._refresh_typing(conversation_id))
        await self._typing_request(conversation_id, "start")

    async def stop_typing(self, conversation_id: int) -> None:
        if self._stop_typing_refresh(conversation_id):
            await self._typing_request(conversation_id, "stop")

    def _stop_typing_refresh(self, conversation_id: int) -> bool:
        task = self._typing.pop(conversation_id, None)
        if task is not None:
            task.cancel()
        return task is not None

    async def _typing_request(self, conversation_id: int, state: str) -> None:
        fields = {"conversation_id": conversation_id, "state": state}
        await self._request("typing", fields, lambda r: None, retry=False)

    async def _refresh_typing(self, conversation_id: int) -> None:
        while True:
            await asyncio.sleep((self.hello.typing_timeout if self.hello else 6.0) / 2)
            if self.connected:
                try:
                    await self._typing_request(conversation_id, "start")
                except (RequestError, ConnectionLost):
                    pass  # the next refresh tries again
                except ClientStopped:
                    return
