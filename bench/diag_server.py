"""Daphne with timers around the product's send and fan-out path (bench/run.py --diagnose).

    python bench/diag_server.py -b 127.0.0.1 -p PORT realtime_sync.asgi:application

Run from the project root with the server's environment. Nothing in the project is
changed: after django.setup() this wraps, in memory, the functions a `send` goes
through, then hands over to Daphne's own command line. At exit it writes, to
$BENCH_DIAG_OUT, percentiles of:

  handler_ms        the gateway's `send` request, start to `ok` result (event loop side)
  queue_ms          from the handler calling the DB thread pool to send_message starting
                    in a worker thread (waiting for a free thread)
  lock_wait_ms      UPDATE ... RETURNING on the conversation row (waiting for other sends);
                    the ORM send only (not PostgreSQL's)
  lock_held_ms      row lock taken -> commit done (the serialized section); the ORM send only
  statement_ms      PostgreSQL's send, one statement: waiting for the lock, the writes and
                    the commit
  publish_ms        after commit: the change's turn in its conversation's publish line
                    and its group_send on the event loop, while the worker thread waits
  send_message_ms   the whole service call in the worker thread
  layer_ms          publish start -> the hub's dispatch of that event (Redis round trip
                    and the hub's receive loop)
  dispatch_ms       the hub handing one layer message with message.created events (one,
                    or a batch of those that piled up behind a publish) to every local
                    connection
  loop_lag_ms       how late a 10 ms asyncio timer fires (event loop saturation)
  gc_ms             each garbage collection (any generation): it holds the GIL, so it
                    stops the event loop and the DB threads for its length
  gc_full_ms        the full ones (generation 2) among them

and counts: message.created events the hub dispatched (and how many layer messages
carried them), how many arrived out of seq order (publishes overtaking each other),
and the streams' reads of the change log (a stream that sees a gap reads the log
instead of sending live).

$BENCH_SWITCH_INTERVAL, if set, is passed to sys.setswitchinterval (an experiment on
the GIL hand-over between the event loop and the DB threads; the default is 5 ms).
"""

import asyncio
import atexit
import contextvars
import gc
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.getcwd())  # the project root (the script's own directory is bench/)

if os.environ.get("BENCH_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))

import django  # noqa: E402

django.setup()

import conversations.services as conversation_services  # noqa: E402
import conversations.services.messages as message_services  # noqa: E402
import conversations.services.send_statement as send_statement  # noqa: E402
import core.publish as publish  # noqa: E402
from gateway import requests as gateway_requests  # noqa: E402
from gateway import stream as gateway_stream  # noqa: E402
from gateway.hub import Hub  # noqa: E402

samples: dict[str, list] = {
    name: []
    for name in (
        "handler_ms",
        "queue_ms",
        "lock_wait_ms",
        "lock_held_ms",
        "statement_ms",
        "publish_ms",
        "send_message_ms",
        "layer_ms",
        "dispatch_ms",
        "loop_lag_ms",
        "gc_ms",
        "gc_full_ms",
    )
}
counts = {
    "events_dispatched": 0,  # message.created events the hub received
    "layer_messages": 0,  # ... in how many layer messages (a batch carries several)
    "events_out_of_order": 0,  # ... whose seq was not the previous one + 1 (publishes raced)
    "log_reads": 0,  # refill reads of the change log by a stream (one device, one conversation)
    "log_rows": 0,  # changes those reads returned (frames sent from the log, not live)
}
_local = threading.local()
_handler_started = contextvars.ContextVar("bench_handler_started", default=None)
_published_at: dict = {}  # (conversation_id, seq) -> perf_counter at publish


def record(name: str, seconds: float) -> None:
    samples[name].append(seconds * 1000.0)


# Garbage collections, in whichever thread they happen.
_gc_started = [0.0]


def timed_collection(phase, info) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    elapsed = time.perf_counter() - _gc_started[0]
    record("gc_ms", elapsed)
    if info["generation"] == 2:
        record("gc_full_ms", elapsed)


gc.callbacks.append(timed_collection)

# The request handler (event loop side).
_original_handler = gateway_requests.HANDLERS["send"]


async def timed_handler(connection, frame):
    started = time.perf_counter()
    _handler_started.set(started)  # copied into the worker thread's context
    try:
        return await _original_handler(connection, frame)
    finally:
        record("handler_ms", time.perf_counter() - started)


gateway_requests.HANDLERS["send"] = timed_handler

# The service in the worker thread.
_original_send_message = conversation_services.send_message


def timed_send_message(**kwargs):
    started = time.perf_counter()
    queued = _handler_started.get()
    if queued is not None:
        record("queue_ms", started - queued)
    _local.lock_taken = None
    try:
        return _original_send_message(**kwargs)
    finally:
        record("send_message_ms", time.perf_counter() - started)


conversation_services.send_message = timed_send_message

_original_lock = message_services.lock_and_take_next_seq


def timed_lock(conversation_id):
    started = time.perf_counter()
    seq = _original_lock(conversation_id)
    _local.lock_taken = time.perf_counter()
    record("lock_wait_ms", _local.lock_taken - started)
    return seq


message_services.lock_and_take_next_seq = timed_lock

# On PostgreSQL the send is one statement (conversations/services/send_statement.py):
# the lock's wait, its holding and the commit are all inside it.
_original_statement = send_statement._call


def timed_statement(arguments):
    started = time.perf_counter()
    try:
        return _original_statement(arguments)
    finally:
        record("statement_ms", time.perf_counter() - started)


send_statement._call = timed_statement

# A change's commit fills its place in the conversation's publish line
# (core/publish_order.py); its publish is done when the place's future is.
_original_fill = publish.conversation_lines.fill


def timed_fill(place, item):
    event = item[0]
    started = time.perf_counter()
    if event.kind == "message.created":
        taken = getattr(_local, "lock_taken", None)
        if taken is not None:
            record("lock_held_ms", started - taken)  # on_commit runs right after COMMIT
            _local.lock_taken = None
        _published_at[(event.conversation_id, event.seq)] = started
        place.done.add_done_callback(lambda _: record("publish_ms", time.perf_counter() - started))
    return _original_fill(place, item)


publish.conversation_lines.fill = timed_fill

# The hub's fan-out (event loop side).
_original_dispatch = Hub.dispatch
_lag_task = None


async def _loop_lag() -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        record("loop_lag_ms", time.perf_counter() - started - 0.01)


async def timed_dispatch(self, message):
    global _lag_task
    if _lag_task is None:
        _lag_task = asyncio.get_running_loop().create_task(_loop_lag())
    # A conversation's changes that piled up behind a publish come as one batch.
    events = message["events"] if message.get("kind") == "batch" else [message]
    created = [event for event in events if event.get("kind") == "message.created"]
    if not created:
        return await _original_dispatch(self, message)
    started = time.perf_counter()
    counts["layer_messages"] += 1
    for event in created:
        count_order(event)
        published = _published_at.pop((event.get("conversation_id"), event.get("seq")), None)
        if published is not None:
            record("layer_ms", started - published)
    try:
        return await _original_dispatch(self, message)
    finally:
        record("dispatch_ms", time.perf_counter() - started)


Hub.dispatch = timed_dispatch

_last_seq: dict = {}


def count_order(message) -> None:
    conversation_id, seq = message.get("conversation_id"), message.get("seq")
    counts["events_dispatched"] += 1
    last = _last_seq.get(conversation_id)
    if last is not None and seq != last + 1:
        counts["events_out_of_order"] += 1
    if last is None or seq > last:
        _last_seq[conversation_id] = seq


_original_load_changes = gateway_stream.load_changes


async def counted_load_changes(*args, **kwargs):
    changes = await _original_load_changes(*args, **kwargs)
    counts["log_reads"] += 1
    counts["log_rows"] += len(changes)
    return changes


gateway_stream.load_changes = counted_load_changes

_original_refill = gateway_stream.ConversationStream.refill


def counted_refill(stream, reason: str):
    """Which refills read the log: a gap held past the grace, or reconciliation."""
    if stream._refill is None:
        counts[f"refills_{reason}"] = counts.get(f"refills_{reason}", 0) + 1
    return _original_refill(stream, reason)


gateway_stream.ConversationStream.refill = counted_refill


def summary() -> dict:
    result = {}
    for name, values in samples.items():
        if not values:
            continue
        values = sorted(values)
        n = len(values)

        def at(q, values=values, n=n):
            return round(values[min(n - 1, max(0, int(round(q / 100 * n + 0.5)) - 1))], 2)

        result[name] = {
            "n": n,
            "p50": at(50),
            "p90": at(90),
            "p99": at(99),
            "max": round(values[-1], 2),
            "mean": round(sum(values) / n, 2),
        }
    result.update(counts)
    result["switch_interval_ms"] = sys.getswitchinterval() * 1000
    return result


def write_summary() -> None:
    path = os.environ.get("BENCH_DIAG_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(summary(), f)


atexit.register(write_summary)


def reset() -> None:
    """SIGUSR1: forget what was recorded so far (the bench sends it when measuring starts)."""
    for values in samples.values():
        values.clear()
    for name in counts:
        counts[name] = 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGUSR1, lambda *_: reset())
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()
