"""Medians over repeated runs: reads result files (one JSON object each, as written by
`run.py --output` / `baseline_channels_chat.py --output`) and prints Markdown tables.

    .venv/bin/python bench/summarize.py bench/results/*.json
"""

import json
import statistics
import sys
from collections import defaultdict


def load(paths):
    for path in paths:
        try:
            with open(path) as f:
                yield path, json.loads(f.read())
        except (OSError, ValueError) as error:
            print(f"skipping {path}: {error}", file=sys.stderr)


def key_of(result):
    c = result["config"]
    # The product's figures belong to the code that ran; the baseline does not run the project.
    code = c["code"].get("commit") or c["code"].get("source_digest") if c["benchmark"] == "realtime_sync" else ""
    # --diagnose runs carry timers in the server: kept apart from plain runs.
    diagnose = "server_diagnostics" in result
    return (c["benchmark"], c["members"], c["senders"], c["rate"], c["processes"], code, diagnose)


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def main(paths):
    groups = defaultdict(list)
    failed = []
    for path, result in load(paths):
        if "config" not in result:
            continue
        if "error" in result:
            failed.append((path, result))
            continue
        if result.get("postgres_restarted_during_run"):
            print(f"leaving out {path}: PostgreSQL restarted during the run", file=sys.stderr)
            continue
        groups[key_of(result)].append(result)
    print(
        "| benchmark | members | senders | msgs/s | offered deliveries/s | runs | deliveries/s | p50 ms | p99 ms | all recipients p99 ms | ack p50 ms | lost (per run) | dup |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[3], k[4], k[6])):
        runs = groups[key]
        benchmark, members, senders, rate, processes, code, diagnose = key
        name = benchmark + (f" @{code}" if code else "") + (f" ×{processes} proc" if processes > 1 else "")
        name += " (--diagnose)" if diagnose else ""
        print(
            f"| {name} | {members} | {senders} | {rate:g} | {rate * members:,.0f} | {len(runs)} "
            f"| {median([r['deliveries_per_second'] for r in runs]):,} "
            f"| {median([r['latency_ms']['p50'] for r in runs])} "
            f"| {median([r['latency_ms']['p99'] for r in runs])} "
            f"| {median([r['all_recipients_latency_ms']['p99'] for r in runs])} "
            f"| {median([r['ack_latency_ms']['p50'] for r in runs])} "
            f"| {', '.join(str(r['lost']) for r in runs)} "
            f"| {sum(r['duplicates'] for r in runs)} |"
        )
    print()
    print("Individual runs:")
    print()
    print(
        "| benchmark | members | msgs/s | started | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | ack p50 / p99 ms "
        "| lost | dup | server cores | machine busy cores (before the run) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[3], k[4], k[6])):
        for r in sorted(groups[key], key=lambda r: r.get("started_at", "")):
            c, lat, ack, cpu = r["config"], r["latency_ms"], r["ack_latency_ms"], r["cpu"]
            name = c["benchmark"] + (f" ×{c['processes']} proc" if c["processes"] > 1 else "")
            name += " (--diagnose)" if key[-1] else ""
            background = r.get("background_busy_cores")
            print(
                f"| {name} | {c['members']} | {c['rate']:g} | {r.get('started_at', '')[11:]} | {r['deliveries_per_second']:,} "
                f"| {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} | {ack['p50']} / {ack['p99']} | {r['lost']} "
                f"| {r['duplicates']} | {cpu.get('servers_cores')} "
                f"| {cpu.get('machine_cores')}{f' ({background})' if background is not None else ''} |"
            )
    if failed:
        print()
        print("Runs that failed:")
        print()
        for path, result in failed:
            c = result["config"]
            print(f"* {c['benchmark']}, {c['members']} members, {c['rate']:g} msgs/s ({path}): {result['error']}")


if __name__ == "__main__":
    main(sys.argv[1:])
