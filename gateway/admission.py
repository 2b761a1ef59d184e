"""Admission control: how much connecting work a process takes on at once.

A reconnect storm (every device of a failed process, or of a restarted load
balancer, coming back together) asks each process for thousands of handshakes
and catch-ups at the same moment. Taken all at once they queue on the database
pool and time out. Turned away and told to come back, the devices come back
again and again: each refusal costs a full WebSocket handshake, and a storm of
2,000 devices measured about 17 refusals per device, four times the work of
serving them. So a process sets up at most WS_MAX_CONNECTING connections at a
time and lets up to WS_MAX_CONNECT_QUEUE more wait their turn, in arrival
order, on their open socket (no `hello` yet); only past that queue, or after
waiting WS_CONNECT_QUEUE_TIMEOUT, is a connection refused with `overloaded`,
a retry hint that grows with the queue, and 4503.

A `sync` of a connection already set up never waits and is never refused, but
it counts against the limit, so devices that have their `hello` become live
before new handshakes start.
"""

import asyncio
import random
import time
from collections import deque
from contextlib import contextmanager

from django.conf import settings

# Set-ups finished within this many seconds make the rate the retry hint divides by.
RATE_WINDOW_SECONDS = 5.0


class Admission:
    def __init__(self):
        self.in_progress = 0
        self._waiting: deque[asyncio.Future] = deque()
        self._finished: deque[float] = deque()  # monotonic times of recent set-ups

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> bool:
        """Take a place for a handshake, waiting in line if the process is busy.
        False: the line is full or the wait ran out; refuse the connection."""
        if self.in_progress < settings.WS_MAX_CONNECTING and not self._waiting:
            self.in_progress += 1
            return True
        if len(self._waiting) >= settings.WS_MAX_CONNECT_QUEUE:
            return False
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(turn, settings.WS_CONNECT_QUEUE_TIMEOUT)
        except TimeoutError:
            return False
        finally:
            if turn.cancelled():  # timed out or the connection went away
                self._forget(turn)
        return True  # leave() passed its place on to this one

    def leave(self) -> None:
        """A handshake or sync finished: its place goes to the first in line."""
        self._finished.append(time.monotonic())
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # in_progress stays: the place passes on
                return
        self.in_progress -= 1

    @contextmanager
    def admitted(self):
        """Count a sync while it runs (it never waits: its device already has `hello`)."""
        self.in_progress += 1
        try:
            yield
        finally:
            self.leave()

    def retry_after(self) -> float:
        """Seconds a turned-away device should wait: about as long as the line
        ahead of it takes at the recent pace, at least WS_OVERLOAD_RETRY_SECONDS,
        spread over one to two times that so the devices do not come back together."""
        now = time.monotonic()
        while self._finished and self._finished[0] < now - RATE_WINDOW_SECONDS:
            self._finished.popleft()
        per_second = max(len(self._finished) / RATE_WINDOW_SECONDS, 1.0)
        base = max(settings.WS_OVERLOAD_RETRY_SECONDS, len(self._waiting) / per_second)
        return round(base * random.uniform(1.0, 2.0), 2)

    def _forget(self, turn: asyncio.Future) -> None:
        try:
            self._waiting.remove(turn)
        except ValueError:
            pass
