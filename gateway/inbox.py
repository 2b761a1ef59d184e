"""A connection's requests: admitted under its limits, run one at a time, in order.

Channels hands the consumer each frame as it arrives; if the consumer ran the
request there, a client sending faster than the server answers would pile its
frames up in Daphne's unbounded input queue (thousands of 64 KB frames held in
memory). Instead each frame is decoded and admitted at once, and either queued
for the connection's worker (at most WS_MAX_PENDING_REQUESTS) or refused with
`rate_limited` on the spot. Requests still run one at a time, in the order
they came, as before.
"""

import logging
import time

from django.conf import settings

from core.errors import ServiceError
from observability import logs, metrics

from . import close_codes, frames
from .limits import connection_bucket, strike_bucket
from .requests import HANDLERS

logger = logging.getLogger(__name__)

# The retry hint when the queue is full is the time one request of this
# connection has taken lately (a slot frees when the one running is done), within
# these bounds: a fixed 0.1 s had a client of a busy server retry ten times a
# second, each retry one more frame to refuse.
PENDING_FULL_RETRY_MIN_SECONDS = 0.1
PENDING_FULL_RETRY_MAX_SECONDS = 5.0
# How much the latest request's time moves that estimate.
REQUEST_TIME_WEIGHT = 0.2


class Inbox:
    def __init__(self, connection, user_bucket):
        self.connection = connection
        self.bucket = connection_bucket()
        self.user_bucket = user_bucket
        self.strikes = strike_bucket()
        # A list: it holds WS_MAX_PENDING_REQUESTS at most, and an empty deque is
        # 760 bytes of every idle connection.
        self.pending: list[tuple] = []
        self.working = False
        self.request_seconds = PENDING_FULL_RETRY_MIN_SECONDS

    async def accept(self, text: str | None, binary: bytes | None) -> None:
        connection = self.connection
        connection.last_received = time.monotonic()
        wait = max(self.bucket.wait_seconds(), self.user_bucket.wait_seconds())
        if wait > 0:
            await self._refuse(text, frames.RateLimited(retry_after=round(wait, 3)))
            if not self.strikes.take():
                logger.warning("device %s kept sending past its rate limit; closing", connection.device_id)
                await connection.close(close_codes.RATE_LIMITED, "rate limit exceeded")
            return
        if len(self.pending) >= settings.WS_MAX_PENDING_REQUESTS:
            await self._refuse(
                text,
                frames.RateLimited("Too many requests waiting for an answer.", retry_after=self.full_retry_after()),
            )
            return
        self.bucket.take()
        self.user_bucket.take()
        self.pending.append((text, binary))
        connection.in_flight += 1
        if not self.working:
            self.working = True
            connection.hub.spawn(self._work())

    def full_retry_after(self) -> float:
        """The retry hint for a request refused because the queue is full."""
        hint = min(max(self.request_seconds, PENDING_FULL_RETRY_MIN_SECONDS), PENDING_FULL_RETRY_MAX_SECONDS)
        return round(hint, 3)

    def discard(self) -> None:
        """The connection closed: what is still queued will not run."""
        self.connection.in_flight -= len(self.pending)
        self.pending.clear()

    async def _refuse(self, text: str | None, error: ServiceError) -> None:
        metrics.FRAMES_REFUSED.inc()
        await self.connection.send_text(frames.error(frames.safe_ref(text), error))

    async def _work(self) -> None:
        try:
            while self.pending and not self.connection.closed:
                text, binary = self.pending.pop(0)
                started = time.monotonic()
                try:
                    await run(self.connection, text, binary)
                finally:
                    self.connection.in_flight -= 1
                    took = time.monotonic() - started
                    self.request_seconds += REQUEST_TIME_WEIGHT * (took - self.request_seconds)
        finally:
            self.working = False


async def run(connection, text: str | None, binary: bytes | None) -> None:
    """Decode one request, run its handler, and answer `ok` or `error`."""
    ref = None
    frame_type, outcome, started = "invalid", "ok", time.perf_counter()
    ref_token = None
    try:
        frame = frames.decode(text, binary)
        ref = frame.get("ref")
        frame_type = frame["type"]
        ref_token = logs.request_ref(ref)
        if connection.hub.draining:
            raise frames.ShuttingDown()
        handler = HANDLERS.get(frame["type"])
        if handler is None:
            raise frames.UnknownType(f"Unknown frame type {frame['type']!r}.", field="type")
        result = await handler(connection, frame)
        if result is not None:
            await connection.send_text(frames.ok(ref, result))
    except ServiceError as error:
        outcome = error.code
        await connection.send_text(frames.error(ref if ref is not None else frames.safe_ref(text), error))
    except Exception:
        outcome = frames.InternalError.code
        logger.exception("request from device %s failed", connection.device_id)
        await connection.send_text(frames.error(ref, frames.InternalError()))
    finally:
        metrics.frame_in(frame_type)
        metrics.request_done(frame_type, outcome, time.perf_counter() - started)
        if ref_token is not None:
            logs.reset_request_ref(ref_token)
