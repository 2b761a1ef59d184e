"""Settings for a server process that also runs plain ORM code on request.

The test settings, plus a test-only URL (`orm_writes.urlpatterns`) through which
a gateway test has ORM code run inside the server process itself: with the
embedded defaults (SQLite, an in-memory channel layer per process) that is the
only place whose publishes reach the server's devices at once.
"""

from realtime_sync.test_settings import *  # noqa: F403

ROOT_URLCONF = "tests.gateway.orm_writes"
