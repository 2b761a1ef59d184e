"""Typing indicators of one connection: never stored, never logged.

`start` is broadcast when typing begins and again at most every half timeout
while the device keeps refreshing it, so other devices can expire it on their
own if the server vanished. The server ends it with a `stop` when the device
says so, sends a message there, disconnects, or stays silent for TYPING_TIMEOUT.
"""

import asyncio
import time

from django.conf import settings

from core.events import Event, conversation_group
from core.publish import send_async
from observability import metrics


class Typing:
    def __init__(self, connection):
        self.connection = connection
        self._active: dict[int, tuple[asyncio.TimerHandle, float]] = {}  # conversation -> (expiry, last broadcast)

    async def start(self, conversation_id: int) -> None:
        timeout = settings.TYPING_TIMEOUT
        loop = asyncio.get_running_loop()
        expiry, last_broadcast = self._active.get(conversation_id, (None, 0.0))
        if expiry is not None:
            expiry.cancel()
        now = time.monotonic()
        broadcast = expiry is None or now - last_broadcast >= timeout / 2
        handle = loop.call_later(timeout, self._expire, conversation_id)
        self._active[conversation_id] = (handle, now if broadcast else last_broadcast)
        if broadcast:
            await self._send(conversation_id, "start")

    async def stop(self, conversation_id: int) -> None:
        entry = self._active.pop(conversation_id, None)
        if entry is not None:
            entry[0].cancel()
            await self._send(conversation_id, "stop")

    async def stop_all(self) -> None:
        for conversation_id in list(self._active):
            await self.stop(conversation_id)

    def _expire(self, conversation_id: int) -> None:
        self.connection.hub.spawn(self.stop(conversation_id))

    async def _send(self, conversation_id: int, state: str) -> None:
        event = Event(
            kind="typing",
            conversation_id=conversation_id,
            payload={
                "user_id": self.connection.user_id,
                "device_id": self.connection.device_id,
                "state": state,
                "expires_in": settings.TYPING_TIMEOUT if state == "start" else None,
            },
            meta={"user_id": self.connection.user_id},
        )
        await send_async(event, [conversation_group(conversation_id)])
        metrics.TYPING_EVENTS.labels(state).inc()
