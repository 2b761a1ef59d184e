"""Exceptions raised to callers of the client."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base class of everything this package raises."""


class RequestError(ClientError):
    """The server answered a request with an `error` frame (docs/protocol.md §14)."""

    def __init__(self, frame: dict[str, Any]):
        self.code: str = frame.get("code", "error")
        self.message: str = frame.get("message", "")
        self.field: str | None = frame.get("field")
        self.details: dict[str, Any] = frame.get("details") or {}
        super().__init__(f"{self.code}: {self.message}")


class ConnectionClosed(ClientError):
    """The WebSocket closed. `code` is the close code, or None when the
    connection was lost without a close frame (or never opened)."""

    def __init__(self, code: int | None, error: dict[str, Any] | None = None):
        self.code = code
        #: An `error` frame the server sent just before closing (e.g. `overloaded`).
        self.error = error
        super().__init__(f"connection closed with {code}" + (f" after {error.get('code')}" if error else ""))

    @property
    def retry_after(self) -> float | None:
        """The server's `details.retry_after`, when it sent `overloaded` before closing."""
        if self.error and self.error.get("code") == "overloaded":
            value = (self.error.get("details") or {}).get("retry_after")
            return float(value) if isinstance(value, int | float) else None
        return None


class ConnectionLost(ClientError):
    """A request that is not retried on another connection (`typing`, `ping`)
    lost its connection before the reply."""


class ClientStopped(ClientError):
    """The client stopped for good: closed by the application, or refused with a
    close code that forbids retrying (4401, 4403, 4410; `code` says which)."""

    def __init__(self, code: int | None):
        self.code = code
        super().__init__("client closed" if code is None else f"client stopped: close code {code}")
