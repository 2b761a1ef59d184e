"""The process-local fan-out hub.

A plain Channels chat gives every connection its own channel-layer channel, so
an event for a 100-member conversation becomes 100 layer messages, each woken,
decoded and re-encoded by its own consumer. Here each server process has one
hub with one layer channel: the hub joins a group (a conversation, a user, a
device) once for all its local connections that follow it, receives each event
once, and hands the already-encoded frame to those connections directly.

The hub also sweeps connections whose heartbeat stopped, re-joins its groups
periodically (channels-redis expires group membership) and after a layer
outage, and on SIGTERM closes every connection with "going away" once the
requests in flight have finished.
"""

import asyncio
import logging
import os
import signal
import threading
import time

from channels.layers import get_channel_layer
from django.conf import settings

from presence import live as presence
from realtime_sync import server_loop
from realtime_sync.db import on_db_pool
from delivery.sync import last_seqs
from devices.selectors import revoked_among
from realtime_sync.events import device_group, user_group

from . import close_codes

logger = logging.getLogger(__name__)

GROUP_REFRESH_SECONDS = 3600

load_last_seqs = on_db_pool(last_seqs)
load_revoked = on_db_pool(revoked_among)


class Hub:
    _hubs: dict = {}  # one per event loop

    @classmethod
    async def running(cls) -> "Hub":
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls()
            await hub._start()
        await hub._ready.wait()
        return hub

    def __init__(self):
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.connections: set = set()
        self.draining = False
        self._groups: dict[str, set] = {}  # group -> local connections following it
        self._joined: set[str] = set()  # groups the hub's channel is in
        self._group_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    async def _start(self) -> None:
        # The default prefix matters: channels-redis reads all of a process's channels
        # through one shared key, "specific.<process>!".
        self.channel = await self.layer.new_channel()
        server_loop.register(asyncio.get_running_loop())
        self.spawn(self._receive_loop())
        self.spawn(self._sweep_loop())
        self.spawn(self._reconcile_loop())
        self.spawn(presence.keep_alive(self))
        self._install_signal_handlers()
        self._ready.set()

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Connections and groups

    async def attach(self, connection) -> None:
        self.connections.add(connection)
        await self.subscribe(user_group(connection.user_id), connection)
        await self.subscribe(device_group(connection.device_id), connection)

    def detach(self, connection) -> None:
        self.connections.discard(connection)
        for group in list(connection.groups):
            self.unsubscribe(group, connection)

    async def subscribe(self, group: str, connection) -> None:
        """Deliver the group's events to `connection`; returns once the layer will route them here."""
        self._groups.setdefault(group, set()).add(connection)
        connection.groups.add(group)
        if group in self._joined:
            return
        async with self._group_lock:
            if group not in self._joined:
                await self.layer.group_add(group, self.channel)
                self._joined.add(group)

    def unsubscribe(self, group: str, connection) -> None:
        connection.groups.discard(group)
        followers = self._groups.get(group)
        if followers is None:
            return
        followers.discard(connection)
        if not followers:
            del self._groups[group]
            self.spawn(self._leave(group))

    async def _leave(self, group: str) -> None:
        async with self._group_lock:
            if group in self._joined and not self._groups.get(group):
                self._joined.discard(group)
                await self.layer.group_discard(group, self.channel)

    async def _rejoin_all(self) -> None:
        async with self._group_lock:
            for group in list(self._joined):
                await self.layer.group_add(group, self.channel)

    # Receiving

    async def _receive_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._recover()
                continue
            backoff = 0.1
            await self.dispatch(message)

    async def dispatch(self, message: dict) -> None:
        for connection in list(self._groups.get(message.get("group"), ())):
            try:
                await connection.deliver(message)
            except Exception:
                logger.exception("delivering %s to device %s failed", message.get("kind"), connection.device_id)
                self.spawn(connection.close(close_codes.INTERNAL_ERROR, "internal error"))

    async def _recover(self) -> None:
        """After a layer outage: join the groups again and let every stream re-read the log."""
        try:
            await self._rejoin_all()
        except Exception:
            logger.exception("re-joining groups failed")
            return
        for connection in list(self.connections):
            connection.refill_all()

    # Heartbeats and group refresh

    async def _sweep_loop(self) -> None:
        timeout = settings.WS_HEARTBEAT_TIMEOUT
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(max(min(timeout / 4, 5.0), 0.05))
            now = time.monotonic()
            for connection in list(self.connections):
                if now - connection.last_received > timeout:
                    self.spawn(connection.close(close_codes.HEARTBEAT_TIMEOUT, "heartbeat timeout"))
            if now - last_refresh > GROUP_REFRESH_SECONDS:
                last_refresh = now
                try:
                    await self._rejoin_all()
                except Exception:
                    logger.exception("refreshing group membership failed")

    async def _reconcile_loop(self) -> None:
        """Catch what the layer dropped: a lost event shows up as a gap only when the
        next one arrives, so every few seconds compare each followed conversation's
        last seq with the streams' cursors and refill the ones behind, and close
        the connections of devices revoked meanwhile."""
        while True:
            await asyncio.sleep(settings.WS_RECONCILE_SECONDS)
            connections = [c for c in list(self.connections) if not c.closed]
            streams = [s for c in connections for s in c.streams.values() if s.live and not s.ended]
            try:
                latest = await load_last_seqs({s.conversation_id for s in streams}) if streams else {}
                # A lost "device revoked" event must not leave the device connected.
                revoked = await load_revoked({c.device_id for c in connections}) if connections else set()
            except Exception:
                logger.exception("reconciling streams failed")
                continue
            for stream in streams:
                if stream.cursor < latest.get(stream.conversation_id, 0):
                    stream.refill()
            for connection in connections:
                if connection.device_id in revoked:
                    self.spawn(connection.close(close_codes.DEVICE_REVOKED, "device revoked"))

    # Graceful shutdown

    async def shutdown(self) -> None:
        """Stop taking requests, let those in flight finish, then close every
        connection with GOING_AWAY. A write is acknowledged only after it commits,
        so nothing acknowledged can be lost; an unacknowledged send is retried by
        the client with the same client_msg_id and stays single."""
        self.draining = True
        await _until(lambda: not any(c.in_flight for c in self.connections), settings.WS_SHUTDOWN_GRACE_SECONDS)
        await asyncio.gather(
            *(c.close(close_codes.GOING_AWAY, "server shutting down; reconnect") for c in list(self.connections)),
            return_exceptions=True,
        )
        # Give clients a moment to answer the close handshake before the server stops.
        await _until(lambda: not self.connections, 1.0)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, lambda s=signum, p=previous: self.spawn(self._stop(s, p)))
            except (NotImplementedError, RuntimeError, ValueError):
                return

    async def _stop(self, signum, previous) -> None:
        """Drain, then hand the signal to the server's own handler so it exits as usual."""
        if self.draining:
            return
        logger.info("signal %s: closing %d connections", signum, len(self.connections))
        await self.shutdown()
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)


async def _until(condition, timeout: float) -> None:
    """Wait (polling) until `condition()` holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
