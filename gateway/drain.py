"""Draining on SIGTERM: turn unready (/readyz 503), stop taking requests, let
those in flight finish, then close every connection with "going away", let
the HTTP requests in flight finish too, and only then let the server exit."""

import asyncio
import logging
import os
import signal
import threading
import time

from django.conf import settings

from core import http_requests
from observability import metrics

from . import close_codes

logger = logging.getLogger(__name__)


async def drain(hub) -> None:
    """Close every connection of `hub` with GOING_AWAY once its requests are done.

    A write is acknowledged only after it commits, so nothing acknowledged can
    be lost; an unacknowledged send is retried by the client with the same
    client_msg_id and stays single."""
    hub.draining = True
    metrics.DRAINING.set(1)
    # Unready first: a load balancer probing /readyz stops sending clients here
    # before the connections below are closed and their devices reconnect.
    if settings.WS_DRAIN_UNREADY_SECONDS > 0:
        await asyncio.sleep(settings.WS_DRAIN_UNREADY_SECONDS)
    await _until(lambda: not any(c.in_flight for c in hub.connections), settings.WS_SHUTDOWN_GRACE_SECONDS)
    await asyncio.gather(
        *(c.close(close_codes.GOING_AWAY, "server shutting down; reconnect") for c in list(hub.connections)),
        return_exceptions=True,
    )
    # Give clients a moment to answer the close handshake before the server stops.
    await _until(lambda: not hub.connections, 1.0)
    # A REST request still running when the loop stops would hold the process
    # up until it is killed (core/http_requests.py).
    await _until(lambda: not http_requests.in_progress(), settings.WS_SHUTDOWN_GRACE_SECONDS)


def install_signal_handlers(hub) -> None:
    """On SIGTERM or SIGINT, drain before the server's own handler runs."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, lambda s=signum, p=previous: hub.spawn(_stop(hub, s, p)))
        except (NotImplementedError, RuntimeError, ValueError):
            return


async def _stop(hub, signum, previous) -> None:
    """Drain, then hand the signal to the server's own handler so it exits as usual."""
    if hub.draining:
        return
    logger.info("signal %s: closing %d connections", signum, len(hub.connections))
    await drain(hub)
    loop = asyncio.get_running_loop()
    loop.remove_signal_handler(signum)
    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    os.kill(os.getpid(), signum)


async def _until(condition, timeout: float) -> None:
    """Wait (polling) until `condition()` holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
