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

A send on PostgreSQL takes its seq, writes and commits in one statement
(conversations/services/send_statement.py), so it cannot take its place under
the lock: it takes it just before the statement (`before_lock`), and its seq,
known at fill, may be lower or higher than those of places around it. Such a
place is handed over once every place taken before it was filled is filled or
given up: a change that could have a lower seq had taken its place by then.
Whatever is ready goes in seq order (the line's `order_of` its items), and
with it any filled change of a lower seq: those were all taken before.
"""

import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

PENDING, FILLED, GIVEN_UP = "pending", "filled", "given up"


@dataclass(eq=False)
class Place:
    line: object
    index: int  # the order it was taken in, within its line
    before_lock: bool = False  # taken before its seq was known (see the module's docstring)
    taken_at: float = field(default_factory=time.monotonic)
    state: str = PENDING
    item: object = None
    # Every place of the line taken before this index must be filled or given up first.
    wait_below: int = 0
    # Resolved once the item has been handed over and published.
    done: Future = field(default_factory=Future)


class _Line:
    __slots__ = ("places", "taken")

    def __init__(self):
        self.places: list[Place] = []  # in the order taken
        self.taken = 0

    def first_pending(self) -> float:
        return next((place.index for place in self.places if place.state == PENDING), float("inf"))


class PublishLines:
    """One line per conversation. `hand_over(item, done)` is called in order,
    under this object's lock, so it must only start the publish (schedule it,
    or publish synchronously where nothing else waits) and resolve `done`
    when it has finished. `order_of(item)` is the item's seq."""

    def __init__(
        self,
        hand_over: Callable[[object, Future], None],
        stale_after: float,
        order_of: Callable[[object], object] = lambda item: item,
    ):
        self.hand_over = hand_over
        self.stale_after = stale_after
        self.order_of = order_of
        self._lock = threading.Lock()
        self._lines: dict[object, _Line] = {}
        # Lines to look at again, put by finalizers, which may run on any
        # thread at any moment, even one holding the lock (SimpleQueue.put is
        # safe there; taking the lock is not).
        self._to_advance: queue.SimpleQueue = queue.SimpleQueue()

    def take_place(self, line, *, before_lock: bool = False) -> Place:
        with self._lock:
            entry = self._lines.get(line)
            if entry is None:
                entry = self._lines[line] = _Line()
            place = Place(line, entry.taken, before_lock=before_lock)
            entry.taken += 1
            entry.places.append(place)
        return place

    def fill(self, place: Place, item) -> None:
        with self._lock:
            if place.state != PENDING:
                return  # skipped as stale meanwhile: its line has moved on, the log has it
            place.item = item
            place.state = FILLED
            line = self._lines[place.line]
            place.wait_below = line.taken if place.before_lock else place.index
            self._skip_stale(line)
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

    def _skip_stale(self, line: _Line) -> None:
        """Give up the line's places pending for `stale_after` seconds."""
        now = time.monotonic()
        for place in line.places:
            if place.state == PENDING and now - place.taken_at >= self.stale_after:
                place.state = GIVEN_UP

    def pending(self) -> int:
        with self._lock:
            return sum(len(line.places) for line in self._lines.values())

    def _advance_requested(self) -> None:
        while True:
            try:
                line = self._to_advance.get_nowait()
            except queue.Empty:
                return
            self._advance(line)

    def _advance(self, key) -> None:
        line = self._lines.get(key)
        if line is None:
            return
        first_pending = line.first_pending()
        ready = [p for p in line.places if p.state == FILLED and p.wait_below <= first_pending]
        going: list[Place] = []
        if ready:
            last = max(self.order_of(p.item) for p in ready)
            going = [p for p in line.places if p.state == FILLED and self.order_of(p.item) <= last]
            going.sort(key=lambda p: self.order_of(p.item))
        given_up = [p for p in line.places if p.state == GIVEN_UP]
        if going or given_up:
            leaving = {id(p) for p in going} | {id(p) for p in given_up}
            line.places = [p for p in line.places if id(p) not in leaving]
        for place in given_up:
            place.done.set_result(None)
        for place in going:
            self.hand_over(place.item, place.done)
        if not line.places:
            del self._lines[key]


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
