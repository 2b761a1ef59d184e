"""The process-local fan-out hub.

A plain Channels chat gives every connection its own channel-layer channel, so
an event for a 100-member conversation becomes 100 layer messages, each woken,
decoded and re-encoded by its own consumer. Here each server process has one
hub with one layer channel: the hub joins a group (a conversation, a user, a
device) once for all its local connections that follow it, receives each event
once, and hands the already-encoded frame to those connections directly.

After a layer outage the hub joins its groups again and every stream re-reads
the log. Its periodic work (heartbeats, group refresh, reconciliation,
presence) is upkeep.py's; closing connections on SIGTERM is drain.py's.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

from core import server_loop
from core.events import device_group, user_group

from . import close_codes, drain, upkeep

logger = logging.getLogger(__name__)


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
        upkeep.start(self)
        drain.install_signal_handlers(self)
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

    async def rejoin_all(self) -> None:
        """Join every group again (channels-redis expires group membership)."""
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
            await self.rejoin_all()
        except Exception:
            logger.exception("re-joining groups failed")
            return
        for connection in list(self.connections):
            connection.refill_all()
