"""CPU per call of the database reads every WebSocket connection makes.

    .venv/bin/python bench/handshake_reads.py [--calls 400] [--project DIR]

A connecting device identifies itself (`device_for_token`), checks it is still
active once its groups are joined and marks itself online
(`still_active_then_online`), plans its sync (`plan_sync`) and reads the log of
its conversations (`changes_in_ranges`). A connect storm makes thousands of
each, so their CPU (in this process: building the query, the driver, making
the rows into objects) bounds how fast a process takes connections. Each is
called --calls times in a row on PostgreSQL (production settings, DEBUG off)
for a user in 3 conversations of 11 members; the figure is process CPU time
(`time.process_time`) per call, in microseconds, median of --runs.

`--project DIR` imports the project from another tree (a `git worktree` of an
older commit) to compare before and after on the same database server. The
database (`--db-name`, default realtime_handshake_reads) is made for the run
and dropped after it. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400, help="calls of each function per run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--project", default=str(ROOT), help="tree to import the project from")
    p.add_argument("--db-name", default="realtime_handshake_reads")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    return p.parse_args()


def psql(args, sql: str) -> None:
    subprocess.run(["psql", f"{args.pg_url}/postgres", "-qc", sql], check=True)


def measure(args) -> dict:
    sys.path.insert(0, args.project)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="realtime_sync.settings",
        DATABASE_URL=f"{args.pg_url}/{args.db_name}",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from conversations.selectors import changes_in_ranges
    from conversations.services.conversations import create_conversation
    from delivery.sync import plan_sync
    from devices.selectors import device_for_token
    from devices.services import issue_device
    from gateway.auth import still_active_then_online

    call_command("migrate", verbosity=0)
    users = [get_user_model().objects.create_user(f"reader{i}", password=secrets.token_hex(8)) for i in range(12)]
    conversation_ids = [
        create_conversation(creator=users[0], kind="group", title=f"g{i}", member_ids=[u.pk for u in users[1:11]])[0].pk
        for i in range(3)
    ]
    token = issue_device(user=users[0], name="reader").token
    device = device_for_token(token)
    cursors = dict.fromkeys(conversation_ids, 1)
    ranges = {cid: (0, 200) for cid in conversation_ids}
    # still_active_then_online runs on the database pool when called; its body is what counts here.
    online = getattr(still_active_then_online, "__wrapped__", still_active_then_online)
    functions = {
        "device_for_token": lambda: device_for_token(token),
        "still_active_then_online": lambda: online(device, "0" * 32),
        "plan_sync": lambda: plan_sync(users[0].pk, cursors, 500),
        "changes_in_ranges_3": lambda: changes_in_ranges(ranges),
    }
    results = {}
    for name, call in functions.items():
        call()
        per_run = []
        for _ in range(args.runs):
            started = time.process_time()
            for _ in range(args.calls):
                call()
            per_run.append((time.process_time() - started) / args.calls * 1e6)
        results[name] = {"us_per_call": round(statistics.median(per_run)), "runs": [round(v) for v in per_run]}
    return results


def main() -> None:
    args = parse_args()
    psql(args, f"DROP DATABASE IF EXISTS {args.db_name}")
    psql(args, f"CREATE DATABASE {args.db_name}")
    try:
        found = measure(args)
    finally:
        # The project's connection pool still holds connections: FORCE closes them.
        psql(args, f"DROP DATABASE IF EXISTS {args.db_name} WITH (FORCE)")
    code = subprocess.run(
        ["git", "-C", args.project, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(json.dumps({"project": args.project, "commit": code, "calls": args.calls, "runs": args.runs, **found}))


if __name__ == "__main__":
    main()
