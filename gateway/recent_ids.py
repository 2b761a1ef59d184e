"""The event ids a connection delivered lately, kept small.

An event sent to several of a connection's groups (presence goes to each of
the user's small conversations, their own group and their subscribers')
reaches it once per group, and it delivers only the first. Every connection
keeps the last few hundred ids; an empty `deque(maxlen=256)` alone is 760
bytes, 2 % of an idle connection. Here the ids are kept as their 64-bit
hashes in an array that grows as ids come, up to its size, then wraps. Two
ids with the same hash (about one chance in 2⁵⁶ while 256 are kept) would
drop one state event, which the next update or a snapshot brings back.
"""

from array import array


class RecentIds:
    __slots__ = ("size", "_hashes", "_next")

    def __init__(self, size: int = 256):
        self.size = size
        self._hashes = array("q")
        self._next = 0  # where the next id goes once the array is full

    def first_time(self, event_id: str) -> bool:
        """Whether `event_id` is not among the last `size` ids; remembers it."""
        hashed = hash(event_id)
        if hashed in self._hashes:
            return False
        if len(self._hashes) < self.size:
            self._hashes.append(hashed)
        else:
            self._hashes[self._next] = hashed
            self._next = (self._next + 1) % self.size
        return True
