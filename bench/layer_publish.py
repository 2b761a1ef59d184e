"""CPU of one publish to many channel-layer groups: a presence flush.

    .venv/bin/python bench/layer_publish.py [--groups 4000] [--runs 5] [--redis-url redis://127.0.0.1:6379/15] [--project DIR]

A presence flush sends one message to each group of every user announced in
its window: the user's own group, the group of those who subscribed to the
user, and their small conversations. In a storm that is thousands of groups,
half of them with nobody in them (a `presence.<id>` group nobody subscribed
to). This publishes such a batch (--groups groups, every other one joined by
one process channel, a 300-byte presence batch each) through the project's
`group_send_many` (core/channel_layer.py) and, as the baseline, through
channels-redis's own `group_send`, one group after another, on the same Redis
server in one run. The figure is this process's CPU per flush
(`time.process_time`), in milliseconds, median of --runs, beside the wall
time; `hiredis` says whether redis-py parsed replies in C. The database
(--redis-url) is flushed before and after. `--project DIR` imports the
project from another tree (a `git worktree` of an older commit). One JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=4000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--project", default=str(ROOT), help="tree to import the project from (another commit's worktree)")
    return p.parse_args()


async def join(layer, groups: list[str], channel: str) -> None:
    if hasattr(layer, "group_add_many"):
        await layer.group_add_many(groups, channel)
    else:  # an older tree
        await asyncio.gather(*(layer.group_add(group, channel) for group in groups))


def flush_messages(groups: int) -> list[tuple[str, dict]]:
    event = {"kind": "presence.updated", "text": "x" * 300, "meta": {"event_id": "0" * 32}}
    return [(f"bench-group.{i}", {"type": "hub.event", "kind": "batch", "events": [event]}) for i in range(groups)]


async def measure(args) -> dict:
    from core.channel_layer import BoundedRedisChannelLayer

    layer = BoundedRedisChannelLayer(hosts=[{"address": args.redis_url}], prefix="bench", capacity=1_000_000)
    await layer.flush()
    channel = await layer.new_channel()
    messages = flush_messages(args.groups)
    joined = [group for i, (group, _) in enumerate(messages) if i % 2 == 0]

    async def project():
        await layer.group_send_many(messages)

    async def baseline():
        for group, message in messages:
            await layer.group_send(group, message)  # channels-redis's, unchanged

    results = {}
    for name, publish in (("group_send_many", project), ("channels_redis_group_send", baseline)):
        cpu, wall = [], []
        for _ in range(args.runs):
            await layer.flush()
            await join(layer, joined, channel)
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            await publish()
            cpu.append((time.process_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started_wall) * 1000)
        received = len(await layer.receive_many(channel, limit=len(messages)))
        results[name] = {
            "cpu_ms": round(statistics.median(cpu), 1),
            "wall_ms": round(statistics.median(wall), 1),
            "cpu_ms_runs": [round(v, 1) for v in cpu],
            "delivered_per_flush": received,
        }
    await layer.flush()
    return results


def main() -> None:
    args = parse_args()
    sys.path.insert(0, args.project)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_sync.settings")
    os.environ.setdefault("SECRET_KEY", "bench-layer-publish")
    os.environ["DEBUG"] = "0"
    import django

    django.setup()
    from redis.utils import HIREDIS_AVAILABLE

    found = asyncio.run(measure(args))
    print(json.dumps({"groups": args.groups, "runs": args.runs, "hiredis": HIREDIS_AVAILABLE, **found}))


if __name__ == "__main__":
    main()
