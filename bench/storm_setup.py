"""The data of a storm run, created in its own process (bench/storm.py runs it).

    python bench/storm_setup.py --project DIR --out FILE --users N [--group-size 10]
        [--groups-per-user 2] [--room-size 500] [--senders 4]

Run with the servers' environment (DATABASE_URL, DJANGO_SETTINGS_MODULE, ...), on a
database freshly created by the caller. Migrates, then creates:

  * N users with one device each: bulk inserts (the same rows `devices.services.issue_device`
    writes: a random token, only its SHA-256 stored; users get an unusable password);
  * one sender user ("storm-sender") with --senders devices: the benchmark's message source;
  * every user in --groups-per-user small group conversations of --group-size users
    (partition 0 takes the users in order, each further partition a fixed shuffle of them),
    and in one large room of about --room-size users (user i in room i mod rooms);
    --room-size 0: no rooms. Each conversation is made by
    `conversations.services.create_conversation`, the sender user as its creator and owner,
    so memberships, the change log (seq 1, `conversation.created`) and the payloads are
    exactly what the product writes.

Writes one JSON file: the tokens, each device's conversations, each conversation's
last_seq, the settings the servers will run with, and how long each step took.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--groups-per-user", type=int, default=2)
    p.add_argument("--room-size", type=int, default=500)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def layout(users: int, group_size: int, groups_per_user: int, room_size: int, seed: int) -> list[tuple[str, list]]:
    """[(title, [user index, ...]), ...]: the small groups, then the rooms."""
    conversations = []
    order = list(range(users))
    rng = random.Random(seed)
    for partition in range(groups_per_user):
        if partition:
            rng.shuffle(order)
        for start in range(0, users, group_size):
            members = sorted(order[start : start + group_size])
            conversations.append((f"group {partition}.{start // group_size}", members))
    if room_size > 0:
        rooms = max(1, round(users / room_size))
        for room in range(rooms):
            conversations.append((f"room {room}", list(range(room, users, rooms))))
    return conversations


def main() -> int:
    args = arguments()
    sys.path.insert(0, str(Path(args.project).resolve()))
    timings = {}
    started = time.perf_counter()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections, transaction

    from conversations.services import create_conversation
    from devices.models import Device, hash_token, new_token

    call_command("migrate", verbosity=0, interactive=False)
    timings["migrate_s"] = round(time.perf_counter() - started, 2)

    step = time.perf_counter()
    User = get_user_model()
    with transaction.atomic():
        sender = User.objects.create_user("storm-sender")
        users = User.objects.bulk_create(
            [User(username=f"storm{i:05d}", password="!storm-no-password") for i in range(args.users)],
            batch_size=2000,
        )
        tokens = [new_token() for _ in range(args.users + args.senders)]
        devices = Device.objects.bulk_create(
            [
                Device(user=user, name=f"storm device {i}", token_hash=hash_token(tokens[i]))
                for i, user in enumerate(users)
            ]
            + [
                Device(user=sender, name=f"storm sender {k}", token_hash=hash_token(tokens[args.users + k]))
                for k in range(args.senders)
            ],
            batch_size=2000,
        )
    timings["users_and_devices_s"] = round(time.perf_counter() - step, 2)

    step = time.perf_counter()
    plan = layout(args.users, args.group_size, args.groups_per_user, args.room_size, args.seed)
    device_conversations: list[list[int]] = [[] for _ in range(args.users)]
    conversations = {}
    for title, members in plan:
        conversation, _ = create_conversation(
            creator=sender, kind="group", title=title, member_ids=[users[i].pk for i in members]
        )
        conversations[conversation.pk] = {"title": title, "last_seq": conversation.last_seq, "members": members}
        for i in members:
            device_conversations[i].append(conversation.pk)
    timings["conversations_s"] = round(time.perf_counter() - step, 2)
    timings["total_s"] = round(time.perf_counter() - started, 2)

    names = ("WS_", "PRESENCE_", "SYNC_", "RECEIPT_", "TYPING_")
    server_settings = {k: getattr(settings, k) for k in dir(settings) if k.startswith(names)}
    server_settings["DEBUG"] = settings.DEBUG
    server_settings["SECRET_KEY_set"] = bool(settings.SECRET_KEY) and "insecure" not in settings.SECRET_KEY
    server_settings["ALLOWED_HOSTS"] = settings.ALLOWED_HOSTS
    server_settings["DB_POOL"] = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    layer = settings.CHANNEL_LAYERS["default"]
    server_settings["CHANNEL_LAYER"] = {
        "BACKEND": layer["BACKEND"],
        **{k: v for k, v in layer.get("CONFIG", {}).items() if k != "hosts"},
    }
    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()

    result = {
        "devices": [
            {"index": i, "user_id": users[i].pk, "device_id": devices[i].pk, "token": tokens[i], "conversations": c}
            for i, c in enumerate(device_conversations)
        ],
        "senders": [
            {"index": k, "user_id": sender.pk, "device_id": devices[args.users + k].pk, "token": tokens[args.users + k]}
            for k in range(args.senders)
        ],
        "conversations": {str(k): v for k, v in conversations.items()},
        "settings": server_settings,
        "timings": timings,
        "counts": {
            "users": args.users,
            "conversations": len(conversations),
            "memberships": sum(len(v["members"]) + 1 for v in conversations.values()),
        },
    }
    Path(args.out).write_text(json.dumps(result, default=str))
    os.chmod(args.out, 0o600)  # it holds tokens
    return 0


if __name__ == "__main__":
    sys.exit(main())
