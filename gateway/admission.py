"""Admission control: how much connecting work a process takes on at once.

A reconnect storm (every device of a failed process, or of a restarted load
balancer, coming back together) asks each process for thousands of handshakes
and catch-ups at the same moment. Taken all at once they queue on the database
pool and every one of them times out; turned away early with a hint, the
devices come back spread out and each is served quickly. So past
WS_MAX_CONNECTING handshakes and syncs in progress, a new connection gets an
`overloaded` error with `details.retry_after` and is closed with 4503.
"""

import random
from contextlib import contextmanager

from django.conf import settings


class Admission:
    def __init__(self):
        self.in_progress = 0

    def full(self) -> bool:
        return self.in_progress >= settings.WS_MAX_CONNECTING

    @contextmanager
    def admitted(self):
        """Count a handshake or a sync while it runs."""
        self.in_progress += 1
        try:
            yield
        finally:
            self.in_progress -= 1

    @staticmethod
    def retry_after() -> float:
        """Seconds a turned-away device should wait: spread over [1, 2] times
        WS_OVERLOAD_RETRY_SECONDS so the devices do not come back together."""
        return round(settings.WS_OVERLOAD_RETRY_SECONDS * random.uniform(1.0, 2.0), 2)
