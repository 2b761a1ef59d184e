"""Asyncio client for the realtime_sync WebSocket protocol, version 1.

`Client` is a device that stays connected (reconnects, resumes from its
cursors, retries unacknowledged requests without duplicates); `Connection`
is one socket, frame by frame. See docs/clients.md.
"""

from . import close_codes
from .backoff import Backoff
from .client import Client
from .connection import Connection
from .cursors import CursorStore, JsonFileCursorStore, MemoryCursorStore
from .errors import ClientError, ClientStopped, ConnectionClosed, ConnectionLost, RequestError
from .events import (
    FetchResult,
    Hello,
    LogEvent,
    Message,
    Presence,
    Receipt,
    ReceiptCursors,
    ReceiptsUpdated,
    Reset,
    SendResult,
    SyncResult,
    Typing,
)

__all__ = [
    "Backoff",
    "Client",
    "ClientError",
    "ClientStopped",
    "Connection",
    "ConnectionClosed",
    "ConnectionLost",
    "CursorStore",
    "FetchResult",
    "Hello",
    "JsonFileCursorStore",
    "LogEvent",
    "MemoryCursorStore",
    "Message",
    "Presence",
    "Receipt",
    "ReceiptCursors",
    "ReceiptsUpdated",
    "RequestError",
    "Reset",
    "SendResult",
    "SyncResult",
    "Typing",
    "close_codes",
]
