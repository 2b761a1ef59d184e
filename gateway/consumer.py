"""The gateway's Channels consumer: handshake, frames in, close. Thin on purpose:
who is connecting is auth.py's job, what to do with a frame is requests.py's,
and what to send when is connection.py's and stream.py's."""

import logging

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from core.events import dumps
from observability import metrics
from presence import live as presence

from . import close_codes, frames
from .auth import Refused, identify, kept_for_connection, still_active_then_online
from .connection import DeviceConnection
from .hub import Hub
from .transport import Outbound, is_gone, protocol_of, transport_of

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


class GatewayConsumer(AsyncWebsocketConsumer):
    # No channel layer of its own: the hub is the process's only layer reader.
    # A per-connection layer receive would also die with Redis and take the
    # socket with it (Channels closes it with 1011), so an outage of the layer
    # would close every connection. Channels looks this alias up and, finding
    # no layer by that name, runs the consumer on its socket alone.
    channel_layer_alias = "gateway-consumers-read-no-layer"
    connection: DeviceConnection | None = None
    outbound: Outbound | None = None

    async def dispatch(self, message):
        """Channels' dispatch without its `close_old_connections` on the shared
        database thread before every message: a thread hop per frame received,
        a tenth of a busy server's time. This consumer's database work runs on
        core.db's pools, whose threads close their old connections around
        every call already."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        # Before accepting: accepting answers the handshake, and with it the
        # client's permessage-deflate offer.
        self.outbound = Outbound(protocol_of(self), accept_deflate=settings.WS_COMPRESSION)
        # Accept first, then close with a code: a browser cannot read the HTTP
        # status of a refused handshake, but it can read a close code.
        await self.accept()
        self.outbound.opened()
        hub = await Hub.running()
        if hub.draining:
            metrics.refused("draining")
            await self.close(code=close_codes.GOING_AWAY, reason="server shutting down; reconnect")
            return
        if not await hub.admission.enter():
            metrics.refused("overloaded")
            overloaded = frames.Overloaded(retry_after=hub.admission.retry_after())
            await self.send_text(frames.error(None, overloaded))
            await self.close(code=close_codes.GOING_AWAY, reason="overloaded; retry later")
            return
        try:
            # A device that gave up while waiting its turn costs nothing more.
            if not is_gone(transport_of(self)):
                await self._set_up(hub)
        finally:
            hub.admission.leave()

    async def _set_up(self, hub) -> None:
        try:
            device = await identify(self.scope)
        except Refused as refused:
            metrics.refused(refused.code)
            await self.close(code=refused.code, reason=refused.reason)
            return
        if hub.user_buckets.connections_of(device.user_id) >= settings.WS_MAX_CONNECTIONS_PER_USER:
            metrics.refused(close_codes.TOO_MANY_CONNECTIONS)
            await self.send_text(frames.error(None, frames.TooManyConnections()))
            await self.close(code=close_codes.TOO_MANY_CONNECTIONS, reason="too many connections")
            return
        # hello first: whatever the groups joined below deliver comes after it.
        await self.send_text(hello(device))
        metrics.CONNECTS.inc()
        self.connection = DeviceConnection(self, hub, kept_for_connection(device), self.outbound)
        await hub.attach(self.connection)
        active, presence_changed = await still_active_then_online(device, self.connection.connection_id)
        if not active:
            metrics.refused(close_codes.DEVICE_REVOKED)
            await self.connection.close(close_codes.DEVICE_REVOKED, "device revoked")
            return
        if presence_changed:
            presence.announce(device.user_id)

    async def send_text(self, text: str) -> None:
        """A frame before the connection is set up (DeviceConnection.send_text after)."""
        if not self.outbound.send(text, once=True):
            await self.send(text_data=text)

    async def receive(self, text_data=None, bytes_data=None):
        connection = self.connection
        if connection is not None and not connection.closed:
            await connection.inbox.accept(text_data, bytes_data)

    async def disconnect(self, code):
        metrics.disconnected(code)
        connection = self.connection
        if connection is None:
            return
        connection.mark_closed()
        connection.hub.detach(connection)
        try:
            await connection.typing.stop_all()
            await presence.disconnected(connection.device, connection.connection_id)
        except Exception:  # the presence sweep will expire the device instead
            logger.exception("presence of device %s on disconnect failed", connection.device_id)


def hello(device) -> str:
    return dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "user": {"id": device.user_id, "username": device.user.get_username()},
            "device": {"id": device.pk, "name": device.name},
            "server_time": timezone.now(),
            "heartbeat_interval": settings.WS_HEARTBEAT_INTERVAL,
            "heartbeat_timeout": settings.WS_HEARTBEAT_TIMEOUT,
            "limits": {
                "max_frame_bytes": settings.WS_MAX_FRAME_BYTES,
                "message_body_max_chars": settings.MESSAGE_BODY_MAX_CHARS,
                "client_msg_id_max_chars": settings.CLIENT_MSG_ID_MAX_CHARS,
                "sync_max_changes": settings.SYNC_MAX_CHANGES,
                "fetch_max_changes": settings.PAGE_SIZE_MAX,
            },
            "presence_timeout": settings.PRESENCE_TIMEOUT,
            "typing_timeout": settings.TYPING_TIMEOUT,
        }
    )
