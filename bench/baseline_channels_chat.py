"""The comparison: the Channels tutorial chat under the same load as bench/run.py.

    .venv/bin/python bench/baseline_channels_chat.py [--members 100] [--senders 10] [--rate 50] [--duration 10]

The server is bench/baseline_app (the tutorial's async chat consumer: one group per
room, group_send per message to every consumer, no database), run by Daphne over
channels-redis on its own Redis db index (default 10, flushed at start and end).
--members devices join one room; the first --senders send on the same open-loop
schedule as run.py, each body carrying its send time; every device (the sender
included: the tutorial's group_send reaches the sender's own consumer too) records
receive time - send time. Prints ONE JSON object of the same shape as run.py.
With --scenario many the devices join one room per conversation of run.py's layout
(the same seeded sizes and members) and every device sends to its room.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (  # noqa: E402
    BENCH,
    CONNECT_TIMEOUT,
    HOST,
    Protocol,
    RunFailed,
    Watchdog,
    check_arguments,
    common_arguments,
    config_of,
    conversation_layout,
    device_specs,
    emit,
    exit_on_signals,
    flush_redis,
    log,
    redis_cpu_seconds,
    redis_url,
    run_load,
    source_digest,
    start_servers,
    stop_servers,
)

ROOM = "bench"


class ChatProtocol(Protocol):
    name = "baseline_channels_chat"

    def url(self, port, device):
        # One room per conversation of the layout (scenario one: a single room).
        return f"ws://{HOST}:{port}/ws/chat/{ROOM}{device.conversation}/"

    def headers(self, port, device):
        # As a browser would: the tutorial's AllowedHostsOriginValidator refuses a
        # handshake without an Origin naming one of ALLOWED_HOSTS.
        return {"Origin": f"http://{HOST}:{port}"}

    async def handshake(self, client):
        # The tutorial consumer joins the room's group before it accepts: once the
        # socket is open, the device receives the room's messages. Nothing else to do.
        return None

    def send_frame(self, device, ref, client_msg_id, body):
        return json.dumps({"message": body, "ref": ref})

    def classify(self, frame):
        if "message" in frame:
            return ("delivery", frame["message"], None)
        if frame.get("type") == "ok":
            return ("ack", frame.get("ref"))
        return None


PRODUCT_CAPACITY = 10000


def parser():
    return common_arguments(__doc__.split("\n\n")[0], redis_db=10)


def main() -> int:
    args = parser().parse_args()
    check_arguments(args)
    exit_on_signals()
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.baseline_app.settings",
        "REDIS_URL": redis_url(args),
        "PYTHONUNBUFFERED": "1",
    }
    # The same per-channel capacity as the product's default (CHANNEL_LAYER_CAPACITY,
    # 10,000), so the tutorial chat is compared at its best: with channels-redis's
    # own default of 100 it drops messages under this load.
    capacity = args.capacity or PRODUCT_CAPACITY
    env["CHANNEL_LAYER_CAPACITY"] = str(capacity)
    servers: list = []
    budget = (
        60
        + CONNECT_TIMEOUT
        + args.settle_timeout
        + args.warmup
        + args.duration
        + args.drain_timeout
        + 20 * args.processes
    )
    with Watchdog(budget, servers):
        try:
            log(f"flushing Redis db {args.redis_db}")
            flush_redis(args)
            servers.extend(start_servers(args.processes, "bench.baseline_app.asgi:application", env, args))
            devices = device_specs(conversation_layout(args))
            probes = {
                "servers": lambda: sum(s.cpu_seconds() or 0.0 for s in servers),
                "redis_server_all_clients": lambda: redis_cpu_seconds(args),
            }
            started = time.time()
            try:
                result = asyncio.run(run_load(ChatProtocol(), devices, servers, args, cpu_probes=probes))
            except RunFailed as failure:
                log(f"run failed: {failure}")
                result = {"error": str(failure)}
            code = {"baseline_app_digest": source_digest(BENCH / "baseline_app")}
            config = config_of(args, "baseline_channels_chat", code=code, capacity=capacity)
            result = {"config": config, **result, "wall_s": round(time.time() - started, 1)}
            result["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
        finally:
            stop_servers(servers)
            try:
                flush_redis(args)
            except Exception as error:
                log(f"clean-up failed: {error}")
    emit(result, args)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
