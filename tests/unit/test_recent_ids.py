"""RecentIds: a connection delivers an event reaching it through several groups once."""

import sys
from collections import deque

from gateway.recent_ids import RecentIds


def test_an_id_is_new_once():
    recent = RecentIds()
    assert recent.first_time("a") is True
    assert recent.first_time("b") is True
    assert recent.first_time("a") is False


def test_only_the_last_ids_are_kept():
    recent = RecentIds(size=3)
    assert all(recent.first_time(i) for i in ("a", "b", "c", "d"))  # "d" takes the place of "a"
    assert [recent.first_time(i) for i in ("b", "c", "d")] == [False, False, False]
    assert recent.first_time("a") is True  # forgotten, so new again; it takes the place of "b"
    assert recent.first_time("b") is True


def test_it_is_smaller_than_a_deque_until_it_is_well_used():
    recent = RecentIds()
    for i in range(20):
        recent.first_time(f"{i:032x}")
    assert sys.getsizeof(recent._hashes) + sys.getsizeof(recent) < sys.getsizeof(deque(maxlen=256)) // 2
