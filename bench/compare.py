"""The product and the plain Channels chat under the same load, in one command.

Runs `run.py` and `baseline_channels_chat.py` with the same arguments, `--runs`
times each, alternating which goes first so a change in the machine's load
weighs on both alike, and prints one JSON object: every run's figures and, per
side, the median of the main ones.

    python bench/compare.py --runs 3 --rate 50 --members 100 --senders 10

Every argument but `--runs` is passed to both scripts (see `run.py --help`).
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SIDES = {"product": BENCH / "run.py", "baseline": BENCH / "baseline_channels_chat.py"}
FIGURES = {
    "deliveries_per_second": ("deliveries_per_second",),
    "latency_p50_ms": ("latency_ms", "p50"),
    "latency_p99_ms": ("latency_ms", "p99"),
    "all_recipients_p99_ms": ("all_recipients_latency_ms", "p99"),
    "ack_p50_ms": ("ack_latency_ms", "p50"),
    "lost": ("lost",),
    "duplicates": ("duplicates",),
    "servers_cores": ("cpu", "servers_cores"),
    "servers_us_per_delivery": ("cpu", "servers_us_per_delivery"),
}


def figure(result: dict, path: tuple):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def run_side(side: str, passed: list[str]) -> dict:
    print(f"[compare] {side}: {' '.join(passed)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(SIDES[side]), *passed], stdout=subprocess.PIPE, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"{side} printed no JSON (exit status {done.returncode})"}


def medians(results: list[dict]) -> dict:
    out = {}
    for name, path in FIGURES.items():
        values = [v for v in (figure(r, path) for r in results) if isinstance(v, (int, float))]
        out[name] = round(statistics.median(values), 2) if values else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3)")
    args, passed = parser.parse_known_args()
    runs = []
    for index in range(args.runs):
        order = ["product", "baseline"] if index % 2 == 0 else ["baseline", "product"]
        runs.append({side: run_side(side, passed) for side in order})
    result = {
        "arguments": passed,
        "runs": runs,
        "median": {side: medians([run[side] for run in runs]) for side in SIDES},
    }
    print(json.dumps(result))
    return 1 if any("error" in run[side] for run in runs for side in SIDES) else 0


if __name__ == "__main__":
    sys.exit(main())
