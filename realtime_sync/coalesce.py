"""Coalescing: many updates to one key within a short window become one broadcast.

Receipts and presence are state, not log: only the latest value matters, so a
burst (a hundred devices acknowledging one message, a connection flapping)
is folded into one event per key per window. Updates may come from any thread
(REST views, database threads); they are handed to the server's event loop,
which flushes each key once its window has passed. A process without a
running gateway (a management command, a test) flushes at once instead.
"""

import asyncio
import logging
import threading

from asgiref.sync import async_to_sync

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def use_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Flush on this loop from now on (called when the gateway starts)."""
    global _loop
    with _loop_lock:
        _loop = loop


class Coalescer:
    def __init__(self, window, flush, merge=None):
        """`window()` gives the seconds to wait; `flush(key, value)` is a coroutine
        function; `merge(old, new)` folds updates (default: the newest wins)."""
        self.window = window
        self.flush = flush
        self.merge = merge or (lambda old, new: new)
        self._pending: dict = {}

    def submit(self, key, value) -> None:
        loop = _loop
        if loop is None or loop.is_closed():
            self._flush_now(key, value)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._add(key, value)
        else:
            loop.call_soon_threadsafe(self._add, key, value)

    def _add(self, key, value) -> None:
        if key in self._pending:
            self._pending[key] = self.merge(self._pending[key], value)
            return
        self._pending[key] = value
        asyncio.get_running_loop().call_later(self.window(), self._due, key)

    def _due(self, key) -> None:
        value = self._pending.pop(key)
        task = asyncio.get_running_loop().create_task(self.flush(key, value))
        task.add_done_callback(_log_failure)

    def _flush_now(self, key, value) -> None:
        try:
            async_to_sync(self.flush)(key, value)
        except Exception:
            logger.exception("flushing %r failed", key)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("coalesced flush failed", exc_info=task.exception())
