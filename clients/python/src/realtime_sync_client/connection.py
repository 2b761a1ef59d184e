"""One WebSocket connection to /ws/v1/: frames in, frames out, replies by ref.

This is the protocol's transport and nothing more: it does not reconnect, keep
cursors or retry (that is `Client`). Programs that want to drive the protocol
frame by frame (tests, load generators) use it directly; `send_raw` sends
anything at all, malformed frames included. `connect_options` are passed on to
`websockets.connect`; `detach` hands the socket's reading over to the caller
(a load generator's own receive loop) once the handshake is done.

Every frame received goes to `frame_received`. A reply (`ok`, `pong`, `error`)
whose `ref` a `request` call is waiting for resolves that call; every other
frame goes to the `on_frame` callback when one was given, else to a queue
read with `recv`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from .errors import ConnectionClosed

JSON = dict[str, Any]
REPLY_TYPES = frozenset({"ok", "pong", "error"})
_CLOSED = object()
_refs = itertools.count(1)


def auth_headers(
    *, token: str | None = None, session_id: str | None = None, headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers for the three ways in (docs/protocol.md §2): a bearer token, or
    the Django session cookie; `headers` (e.g. an Origin) are added as given."""
    result = dict(headers or {})
    if token is not None:
        result.setdefault("Authorization", f"Bearer {token}")
    if session_id is not None:
        cookie = f"sessionid={session_id}"
        result["Cookie"] = f"{result['Cookie']}; {cookie}" if "Cookie" in result else cookie
    return result


class Connection:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        session_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        on_frame: Callable[[JSON], None] | None = None,
        max_size: int | None = 2**22,
        open_timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
    ):
        self.url = url + (f"?{urllib.parse.urlencode(query)}" if query else "")
        self.headers = auth_headers(token=token, session_id=session_id, headers=headers)
        self.on_frame = on_frame
        self.max_size = max_size
        self.open_timeout = open_timeout
        #: More keyword arguments for `websockets.connect` (e.g. `compression=None`,
        #: `proxy=None`, `ping_interval=None`, `close_timeout`, `max_queue`), applied
        #: over the ones this class sets (`additional_headers`, `max_size`, `open_timeout`).
        self.connect_options = dict(connect_options or {})
        #: The underlying `websockets` connection, once open.
        self.ws: ClientConnection | None = None
        #: The `hello` frame, once received.
        self.hello: JSON | None = None
        #: The close code once closed (None while open, or when lost without a close frame).
        self.close_code: int | None = None
        self.last_error: JSON | None = None  # the last unsolicited error frame (e.g. `overloaded`)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: dict[str | int, asyncio.Future[JSON]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._detached = False

    # Opening

    async def open(self, *, wait_for_hello: bool = True) -> JSON | None:
        """Open the socket and (by default) wait for `hello`.

        A close before `hello` is a refusal (docs/protocol.md §2): it raises
        ConnectionClosed with the code and any error frame sent just before
        (`overloaded` carries `retry_after`); no `hello` within `open_timeout`
        raises ConnectionClosed(None) caused by a TimeoutError. Frames that
        overtake `hello` go where every other pushed frame goes.
        """
        options: dict[str, Any] = {
            "additional_headers": self.headers,
            "max_size": self.max_size,
            "open_timeout": self.open_timeout,
            **self.connect_options,
        }
        self.ws = await websockets.connect(self.url, **options)
        self._reader = asyncio.create_task(self._read())
        if not wait_for_hello:
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._hello_waiter: asyncio.Future[JSON] | None = waiter
        try:
            closed = asyncio.create_task(self._closed.wait())
            try:
                await asyncio.wait([waiter, closed], timeout=self.open_timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if waiter.done():
                self.hello = waiter.result()
                return self.hello
            if self._closed.is_set():
                raise ConnectionClosed(self.close_code, self.last_error)
            self.abort()
            raise ConnectionClosed(None) from TimeoutError(f"no hello within {self.open_timeout:g} s")
        finally:
            self._hello_waiter = None

    _hello_waiter: asyncio.Future[JSON] | None = None

    # Receiving

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for data in self.ws:
                self.frame_received(json.loads(data))
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self._detached:
                self._finish()

    def _finish(self) -> None:
        assert self.ws is not None
        self.close_code = self.ws.close_code
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionClosed(self.close_code, self.last_error))
        self._waiting.clear()
        self._closed.set()
        self._queue.put_nowait(_CLOSED)

    def frame_received(self, frame: JSON) -> None:
        """Route one frame; subclasses may override to observe every frame (then call this)."""
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "hello" and self._hello_waiter is not None and not self._hello_waiter.done():
            self._hello_waiter.set_result(frame)
            return
        if kind in REPLY_TYPES:
            ref = frame.get("ref")
            future = self._waiting.pop(ref, None) if ref is not None else None
            if future is not None:
                if not future.done():
                    future.set_result(frame)
                return
            if kind == "error" and ref is None:
                self.last_error = frame
        if self.on_frame is not None:
            self.on_frame(frame)
        else:
            self._queue.put_nowait(frame)

    async def recv(self, timeout: float | None = None) -> JSON:
        """The next frame no `request` took, in arrival order; ConnectionClosed once closed."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # every later call raises too
            raise ConnectionClosed(self.close_code, self.last_error)
        return item

    # Sending

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.send_raw(json.dumps(frame))  # ASCII escapes: any string, even a lone surrogate, is sendable

    async def send_raw(self, data: str | bytes) -> None:
        """Send a text (str) or binary (bytes) frame exactly as given."""
        if self.ws is None:
            raise ConnectionClosed(None)
        try:
            await self.ws.send(data)
        except websockets.ConnectionClosed:
            raise ConnectionClosed(self.ws.close_code, self.last_error) from None

    @staticmethod
    def new_ref() -> str:
        return f"r{next(_refs)}"

    async def request(self, type_: str, /, **fields: Any) -> JSON:
        """Send a request with a fresh `ref` and return its reply frame (`ok`,
        `pong` or `error`, as received). Raises ConnectionClosed if the
        connection closes first."""
        if self._detached:
            raise RuntimeError("detached: the caller reads the replies from `ws`")
        ref = self.new_ref()
        future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            await self.send({"type": type_, "ref": ref, **fields})
            return await future
        finally:
            self._waiting.pop(ref, None)

    # Handing the socket over

    async def detach(self) -> list[JSON]:
        """Stop reading the socket: from now on the caller reads `ws` itself.

        For programs with their own receive loop over the raw text (a load
        generator that must not decode every frame): open, wait for `hello`,
        make the requests of the handshake, then detach and read `ws`. Returns
        the frames already received that no `request` took and `recv` did not
        return, in arrival order; nothing after them has been read. After it,
        `recv` and `request` raise; `send`, `send_raw`, `abort`, `close` and
        `wait_closed` go on working (the close code is then `ws.close_code`).
        Refused while a `request` is waiting for its reply.
        """
        if self._waiting:
            raise RuntimeError("requests are waiting for replies")
        self._detached = True
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()  # cancelling websockets' recv loses nothing: the next recv() has the next frame
            await asyncio.wait([reader])
        frames = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _CLOSED:
                frames.append(item)
        self._queue.put_nowait(_CLOSED)  # recv raises from now on
        return frames

    # Closing

    @property
    def closed(self) -> bool:
        if self._detached and self.ws is not None:
            return self.ws.state is State.CLOSED
        return self._closed.is_set()

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake, as a network loss would."""
        if self.ws is not None:
            self.ws.transport.abort()

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)
        await self.wait_closed()

    async def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait until the connection has closed and every frame was routed; the close code."""
        if self.ws is None:
            return None
        if self._detached:
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
            self.close_code = self.ws.close_code
            return self.close_code
        await asyncio.wait_for(self._closed.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return self.close_code
