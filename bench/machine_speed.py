"""How fast this machine runs Python right now, for reading figures of different days.

The development machine drifts: the same commit took 15–17 s for a storm one
hour and 11–13 s the next. Each benchmark's JSON therefore records
`machine_speed_ms`: the CPU time one fixed piece of pure-Python work (encoding
small JSON objects, as the servers do all day) took just before the run, the
median of five. Lower is faster; figures are comparable across runs only as
far as these are close.
"""

import json
import statistics
import time

_SAMPLE = {"type": "event", "kind": "message.created", "seq": 12, "payload": {"id": 7, "body": "lunch at noon?"}}


def _work() -> int:
    total = 0
    for i in range(20_000):
        total += len(json.dumps(_SAMPLE)) + i % 7
    return total


def machine_speed_ms(repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        started = time.process_time()
        _work()
        timings.append(time.process_time() - started)
    return round(statistics.median(timings) * 1000, 1)
