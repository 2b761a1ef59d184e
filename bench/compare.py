"""The product and the plain Channels chat under the same load, in one command.

Runs `run.py` and `baseline_channels_chat.py` with the same arguments, `--runs`
times each, alternating which goes first so a change in the machine's load
weighs on both alike, and prints one JSON object: every run's figures and, per
side, the median of the main ones.

    python bench/compare.py --runs 3 --rate 50 --members 100 --senders 10

Rising rates: `--rates 100,200,400,700,1000` runs both sides at each total rate in
turn (each run from scratch, rising within each round of `--runs`), and reports per
side and rate the medians (delivered rate, p50/p99, loss) and the highest rate whose
medians hold p99 < `--p99-target-ms` with nothing lost or unacknowledged:

    python bench/compare.py --scenario many --runs 3 --rates 100,200,400,700,1000

Every other argument is passed to both scripts (see `run.py --help`).
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
    "delivered_messages_per_second": ("delivered_messages_per_second",),
    "latency_p50_ms": ("latency_ms", "p50"),
    "latency_p99_ms": ("latency_ms", "p99"),
    "all_recipients_p99_ms": ("all_recipients_latency_ms", "p99"),
    "ack_p50_ms": ("ack_latency_ms", "p50"),
    "lost": ("lost",),
    "duplicates": ("duplicates",),
    "out_of_order": ("out_of_order",),
    "unacked": ("unacked",),
    "closed_by_server": ("closed_by_server",),
    "servers_cores": ("cpu", "servers_cores"),
    "servers_us_per_delivery": ("cpu", "servers_us_per_delivery"),
    "servers_us_per_message": ("cpu", "servers_us_per_message"),
    "machine_cores": ("cpu", "machine_cores"),
    "client_cores": ("cpu", "client_cores"),
    "background_busy_cores": ("background_busy_cores",),
}


def figure(result: dict, path: tuple):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def for_baseline(passed: list[str]) -> list[str]:
    """The arguments without run.py's own options (the database's, --commit,
    --diagnose, ...): the tutorial chat has none of them."""
    import baseline_channels_chat
    import run

    shared = set(baseline_channels_chat.parser()._option_string_actions)
    product_only = {
        option: action.nargs != 0  # takes a value
        for option, action in run.parser()._option_string_actions.items()
        if option not in shared
    }
    kept, skip_value = [], False
    for token in passed:
        if skip_value:
            skip_value = False
            continue
        option = token.split("=", 1)[0]
        if option in product_only:
            skip_value = product_only[option] and "=" not in token
            continue
        kept.append(token)
    return kept


def run_side(side: str, passed: list[str]) -> dict:
    if side == "baseline":
        passed = for_baseline(passed)
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
    out["failed_runs"] = sum(1 for r in results if "error" in r)
    return out


def compare(passed: list[str], runs: int, rounds: int = 0) -> list[dict]:
    """`runs` runs of each side with the same arguments, alternating which goes first
    (`rounds`: how many rounds came before, to keep alternating across rates)."""
    out = []
    for index in range(runs):
        order = ["product", "baseline"] if (rounds + index) % 2 == 0 else ["baseline", "product"]
        out.append({side: run_side(side, passed) for side in order})
    return out


def holds(median: dict, target_ms: float) -> bool:
    """The load was carried: p99 under the target, nothing lost or left unacknowledged."""
    p99 = median["latency_p99_ms"]
    return (
        not median["failed_runs"]
        and p99 is not None
        and p99 < target_ms
        and median["lost"] == 0
        and median["unacked"] == 0
    )


def rising(passed: list[str], rates: list[float], runs: int, target_ms: float) -> dict:
    """Each round runs every rate, lowest first, both sides at each; medians per rate."""
    by_rate: dict[float, list[dict]] = {rate: [] for rate in rates}
    for round_index in range(runs):
        for position, rate in enumerate(rates):
            results = compare([*passed, "--rate", f"{rate:g}"], 1, rounds=round_index + position)
            by_rate[rate].extend(results)
    steps = []
    for rate in rates:
        median = {side: medians([run[side] for run in by_rate[rate]]) for side in SIDES}
        steps.append({"rate": rate, "runs": by_rate[rate], "median": median})
    summary = {}
    for side in SIDES:
        table = [
            {
                "rate": step["rate"],
                "holds": holds(step["median"][side], target_ms),
                **{
                    name: step["median"][side][name]
                    for name in (
                        "delivered_messages_per_second",
                        "deliveries_per_second",
                        "latency_p50_ms",
                        "latency_p99_ms",
                        "lost",
                        "unacked",
                        "servers_us_per_delivery",
                        "servers_us_per_message",
                        "background_busy_cores",
                    )
                },
            }
            for step in steps
        ]
        held = [row["rate"] for row in table if row["holds"]]
        summary[side] = {"highest_rate_holding": max(held) if held else None, "rates": table}
    return {"p99_target_ms": target_ms, "summary": summary, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3; per rate with --rates)")
    parser.add_argument(
        "--rates",
        help="rising rates: total messages/s to run in turn, comma separated (e.g. 100,200,400,700,1000)",
    )
    parser.add_argument(
        "--p99-target-ms", type=float, default=50.0, help="with --rates: the p99 a rate must hold (default 50)"
    )
    args, passed = parser.parse_known_args()
    if args.rates:
        if "--rate" in passed:
            parser.error("--rates and --rate exclude each other")
        try:
            rates = sorted({float(r) for r in args.rates.split(",") if r.strip()})
        except ValueError:
            parser.error("--rates takes numbers separated by commas")
        result = {"arguments": passed, "rates": rates, **rising(passed, rates, args.runs, args.p99_target_ms)}
        failed = any("error" in run[side] for step in result["steps"] for run in step["runs"] for side in SIDES)
    else:
        runs = compare(passed, args.runs)
        result = {
            "arguments": passed,
            "runs": runs,
            "median": {side: medians([run[side] for run in runs]) for side in SIDES},
        }
        failed = any("error" in run[side] for run in runs for side in SIDES)
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
