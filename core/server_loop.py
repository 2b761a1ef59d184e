"""The event loop of this process's WebSocket gateway, if it runs one.

Code on other threads (REST views, database threads finishing a transaction)
hands its publishing to this loop with a bounded wait, instead of blocking on it
forever: once the loop has stopped (the server is exiting), there is nobody left
to publish to, and the change log still has the change.
"""

import asyncio
import threading

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def register(loop: asyncio.AbstractEventLoop) -> None:
    global _loop
    with _lock:
        _loop = loop


def get() -> asyncio.AbstractEventLoop | None:
    loop = _loop
    return None if loop is None or loop.is_closed() else loop


def running() -> asyncio.AbstractEventLoop | None:
    """The loop running on this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def on_this_thread(loop: asyncio.AbstractEventLoop) -> bool:
    return running() is loop
