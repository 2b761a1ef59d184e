"""A conversation's changes are published in the order of their seqs.

Changes of one conversation commit in seq order (its row lock serializes them),
but each is published after its commit by the thread that committed it: two
database threads of a process can hand theirs over in the other order. A device
that gets seq 6 before 5 holds 6 and, if 5 is late, reads the log for it
(gateway/stream.py), so one swapped pair under load costs a log read on every
device of the conversation.

So a change takes its place in its conversation's line when it is recorded,
which is under the row lock: places are taken in seq order. Its commit fills
the place, and the line hands changes over from its head, in order. A rolled
back transaction discards its on_commit hooks, and with them the one holding
the place: the place is given up as the hook is freed (`weakref.finalize`;
CPython frees it at once) and the line moves on. A place that is neither
filled nor given up within `stale_after` seconds is skipped by the next fill
of its line, so a lost place cannot hold up a conversation.

The committing thread does not wait for the publish: its write is durable,
and the line publishes in order whoever started it. (It used to wait, which
held each sender's next request back by a publish round trip.)
"""

import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

PENDING, FILLED, GIVEN_UP = "pending", "filled", "given up"


@dataclass(eq=False)
class Place:
    line: object
    taken_at: float = field(default_factory=time.monotonic)
    state: str = PENDING
    item: object = None
    # Resolved once the item has been handed over and published.
    done: Future = field(default_factory=Future)


class PublishLines:
    """One line per conversation. `hand_over(item, done)` is called in order,
    under this object's lock, so it must only start the publish (schedule it,
    or publish synchronously where nothing else waits) and resolve `done`
    when it has finished."""

    def __init__(self, hand_over: Callable[[object, Future], None], stale_after: float):
        self.hand_over = hand_over
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._lines: dict[object, deque[Place]] = {}
        # Lines to look at again, put by finalizers, which may run on any
        # thread at any moment, even one holding the lock (SimpleQueue.put is
        # safe there; taking the lock is not).
        self._to_advance: queue.SimpleQueue = queue.SimpleQueue()

    def take_place(self, line) -> Place:
        place = Place(line)
        with self._lock:
            self._lines.setdefault(line, deque()).append(place)
        return place

    def fill(self, place: Place, item) -> None:
        with self._lock:
            place.item = item
            place.state = FILLED
            self._skip_stale(place)
            self._advance(place.line)
            self._advance_requested()

    def give_up(self, place: Place) -> None:
        """The place's transaction rolled back. May run in a finalizer."""
        if place.state != PENDING:
            return
        place.state = GIVEN_UP
        self._to_advance.put(place.line)
        if self._lock.acquire(blocking=False):
            try:
                self._advance_requested()
            finally:
                self._lock.release()

    def _skip_stale(self, place: Place) -> None:
        """Give up the places ahead of `place` pending for `stale_after` seconds."""
        now = time.monotonic()
        for ahead in self._lines.get(place.line, ()):
            if ahead is place:
                return
            if ahead.state == PENDING and now - ahead.taken_at >= self.stale_after:
                ahead.state = GIVEN_UP

    def pending(self) -> int:
        with self._lock:
            return sum(len(line) for line in self._lines.values())

    def _advance_requested(self) -> None:
        while True:
            try:
                line = self._to_advance.get_nowait()
            except queue.Empty:
                return
            self._advance(line)

    def _advance(self, line) -> None:
        places = self._lines.get(line)
        while places and places[0].state != PENDING:
            place = places.popleft()
            if place.state == FILLED:
                self.hand_over(place.item, place.done)
            else:
                place.done.set_result(None)
        if places is not None and not places:
            del self._lines[line]


class OnCommitHook:
    """The on_commit callable that holds a place: called, it fills the place
    with `make_item()` (made at commit); dropped uncalled (rollback), it gives
    the place up."""

    def __init__(self, lines: PublishLines, place: Place, make_item: Callable[[], object]):
        self.lines = lines
        self.place = place
        self.make_item = make_item
        weakref.finalize(self, lines.give_up, place)

    def __call__(self) -> None:
        self.lines.fill(self.place, self.make_item())
