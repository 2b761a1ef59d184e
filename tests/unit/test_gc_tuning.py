"""The server's garbage-collector settings (core/gc_tuning.py), applied to this
process and put back after each test."""

import gc

import pytest

from core.gc_tuning import tune_for_server


@pytest.fixture
def collector():
    threshold = gc.get_threshold()
    gc.unfreeze()  # whatever importing realtime_sync.asgi froze in this test process
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_the_young_threshold_raised(collector, settings):
    settings.GC_FREEZE_AT_START = True
    settings.GC_GEN0_THRESHOLD = 50_000
    _, older, oldest = gc.get_threshold()
    made_at_start_up = {"a": [1, 2, 3]}
    tune_for_server()
    assert gc.get_threshold() == (50_000, older, oldest)
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(made_at_start_up)
    assert not any(made_at_start_up is obj for obj in gc.get_objects())


def test_zero_and_off_leave_cpythons_collector_as_it_was(collector, settings):
    settings.GC_FREEZE_AT_START = False
    settings.GC_GEN0_THRESHOLD = 0
    before = gc.get_threshold()
    tune_for_server()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
