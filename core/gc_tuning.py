"""Garbage collection for a server process that holds many connections.

CPython's cyclic collector holds the GIL while it runs: the event loop and the
database threads stop for its length. A collection of the oldest generation
traverses every tracked object of the process, and on a busy gateway that is
Django and every app imported at start-up plus each connection's state: the
benchmark's diagnose timers (bench/diag_server.py, `gc_full_ms`) show such a
pause delaying every frame waiting behind it. Two settings, applied once the
ASGI application is built (realtime_sync/asgi.py):

* GC_FREEZE_AT_START: what start-up made (modules, settings, URL patterns,
  ORM metadata) lives as long as the process; `gc.freeze()` moves it to the
  permanent generation, which no collection traverses again.
* GC_GEN0_THRESHOLD: allocations between two collections of the youngest
  generation (CPython's default is 700). A busy loop allocates that many in
  well under a millisecond of frames, so the collector ran thousands of times
  a second, and each older generation in proportion; a larger threshold
  means fewer, slightly longer young collections. 0 keeps CPython's.

Neither changes what is freed: reference counting frees nearly everything
at once, and cycles are still collected, less often.
"""

import gc

from django.conf import settings


def tune_for_server() -> None:
    if settings.GC_GEN0_THRESHOLD > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(settings.GC_GEN0_THRESHOLD, older, oldest)
    if settings.GC_FREEZE_AT_START:
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()
