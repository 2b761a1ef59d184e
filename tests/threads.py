"""Running database work in many threads at once, for concurrency tests."""

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection


def run_in_threads(count, work):
    """Run work(i) in `count` threads released together; return the results in order.

    Each thread hands its database connection back when done.
    """
    barrier = threading.Barrier(count)

    def task(i):
        try:
            barrier.wait()
            return work(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))
