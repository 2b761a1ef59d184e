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

from asgiref.sync import async_to_sync

from observability import metrics

from . import server_loop

logger = logging.getLogger(__name__)


class Coalescer:
    def __init__(self, window, flush, merge=None, *, name: str = "state"):
        """`window()` gives the seconds to wait; `flush(key, value)` is a coroutine
        function; `merge(old, new)` folds updates (default: the newest wins);
        `name` labels its metrics (broadcasts sent, and coalesced away)."""
        self.window = window
        self.flush = flush
        self.merge = merge or (lambda old, new: new)
        self._pending: dict = {}
        self._sent = metrics.BROADCASTS.labels(name)
        self._coalesced = metrics.BROADCASTS_COALESCED.labels(name)

    def submit(self, key, value) -> None:
        loop = server_loop.get()
        if loop is None:
            self._flush_now(key, value)
        elif server_loop.on_this_thread(loop):
            self._add(key, value)
        elif loop.is_running():
            loop.call_soon_threadsafe(self._add, key, value)
        # else: the server is exiting; state broadcasts are moot, REST shows the state.

    def _add(self, key, value) -> None:
        if key in self._pending:
            self._coalesced.inc()
            self._pending[key] = self.merge(self._pending[key], value)
            return
        self._pending[key] = value
        asyncio.get_running_loop().call_later(self.window(), self._due, key)

    def _due(self, key) -> None:
        value = self._pending.pop(key)
        self._sent.inc()
        task = asyncio.get_running_loop().create_task(self.flush(key, value))
        task.add_done_callback(_log_failure)

    def _flush_now(self, key, value) -> None:
        self._sent.inc()
        try:
            async_to_sync(self.flush)(key, value)
        except Exception:
            logger.exception("flushing %r failed", key)


class BatchCoalescer(Coalescer):
    """One window for all keys: every key updated within it is flushed together,
    as one batch, by `flush(batch)` (a dict key -> merged value).

    A storm (a thousand devices coming online within a second) then costs one
    flush, which can read its state in one query and send one message per
    audience, instead of one per key. A key still flushes at most once per window.
    """

    def _add(self, key, value) -> None:
        first = not self._pending
        if key in self._pending:
            self._coalesced.inc()
        self._pending[key] = self.merge(self._pending[key], value) if key in self._pending else value
        if first:
            asyncio.get_running_loop().call_later(self.window(), self._due_all)

    def _due_all(self) -> None:
        batch, self._pending = self._pending, {}
        self._sent.inc(len(batch))
        task = asyncio.get_running_loop().create_task(self.flush(batch))
        task.add_done_callback(_log_failure)

    def _flush_now(self, key, value) -> None:
        self._sent.inc()
        try:
            async_to_sync(self.flush)({key: value})
        except Exception:
            logger.exception("flushing %r failed", key)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("coalesced flush failed", exc_info=task.exception())
