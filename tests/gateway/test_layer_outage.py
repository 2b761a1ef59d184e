"""A Redis outage under traffic: no connection closes, nothing acknowledged is
lost, and every device is complete and in order soon after Redis returns.

The server here has a Redis of its own (started on a free port), so the test
can kill it without disturbing anyone else's."""

import asyncio
import itertools
import subprocess
import time

import pytest
from channels.db import database_sync_to_async

from conversations.services import create_conversation

from .conftest import SHARED_SERVER_ENV
from .harness import Device, ServerProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

OUTAGE_SECONDS = 4
RECOVERY_LIMIT_SECONDS = 5


class PrivateRedis:
    """A throwaway redis-server that can be killed and started again on its port."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def private_redis():
    redis = PrivateRedis().start()
    yield redis
    redis.kill()


@pytest.fixture
def server_on_private_redis(private_redis, transactional_db):
    # No periodic reconciliation with the log: recovery must come from the hub
    # noticing the layer is back, not from a timer that would mask its absence.
    env = {**SHARED_SERVER_ENV, "WS_RECONCILE_SECONDS": "600"}
    server = ServerProcess(**env, REDIS_URL=private_redis.url).start()
    yield server
    server.stop()


async def test_a_redis_outage_closes_no_connection_and_loses_nothing(server_on_private_redis, private_redis, account):
    server = server_on_private_redis
    alice, alice_tokens = await account(devices=2)
    bob, bob_tokens = await account(devices=3)
    conversation, _ = await database_sync_to_async(create_conversation)(
        creator=alice, kind="group", member_ids=[bob.pk]
    )
    cid = conversation.pk
    sender, *others = devices = [
        Device(server.url, token, name=f"d{i}") for i, token in enumerate(alice_tokens + bob_tokens[:2])
    ]
    for device in devices:
        await device.connect()
        assert (await device.request("sync", cursors={}))["type"] == "ok"

    acknowledged: list[int] = []
    numbers = itertools.count(1)

    async def send_one() -> None:
        n = next(numbers)
        reply = await sender.request("send", conversation_id=cid, client_msg_id=f"m{n}", body=f"message {n}")
        assert reply["type"] == "ok", reply
        acknowledged.append(reply["result"]["seq"])

    async def keep_sending(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await send_one()
            # 25 a second, under WS_RATE_PER_CONNECTION (30): faster, a quick
            # server would answer `rate_limited` once the burst was spent.
            await asyncio.sleep(0.04)

    stop = asyncio.Event()
    sending = asyncio.create_task(keep_sending(stop))
    await asyncio.sleep(0.5)

    private_redis.kill()
    outage_started = time.monotonic()
    # While the layer is down: requests keep working, and a new connection gets
    # hello, can sync and can send.
    late = Device(server.url, bob_tokens[2], name="late")
    await late.connect()
    assert (await late.request("sync", cursors={}))["type"] == "ok"
    assert (await late.request("typing", conversation_id=cid, state="start"))["type"] == "ok"
    reply = await late.request("send", conversation_id=cid, client_msg_id="during-outage", body="still here")
    assert reply["type"] == "ok", reply
    late_seq = reply["result"]["seq"]
    acknowledged.append(late_seq)
    devices.append(late)
    await asyncio.sleep(max(OUTAGE_SECONDS - (time.monotonic() - outage_started), 0))
    sent_during_outage = len(acknowledged)

    private_redis.start()
    back = time.monotonic()
    await asyncio.sleep(0.5)
    stop.set()
    await sending
    last = max(acknowledged)
    # One connection's sends are answered in order; the late device's send, from
    # another connection, may be acknowledged before or after its neighbours.
    from_sender = [seq for seq in acknowledged if seq != late_seq]
    assert sent_during_outage > 20 and from_sender == sorted(from_sender)
    assert len(set(acknowledged)) == len(acknowledged)

    deadline = back + RECOVERY_LIMIT_SECONDS
    for device in devices:
        if last not in device.seqs(cid):
            await device.wait_for(
                lambda frame: frame.get("conversation_id") == cid and frame.get("seq") == last,
                timeout=max(deadline - time.monotonic(), 0.001),
            )
    recovered_after = time.monotonic() - back
    assert recovered_after < RECOVERY_LIMIT_SECONDS

    for device in devices:
        assert device.close_code is None, (device.name, device.close_code)
        # Complete, in order, exactly once: 1 (created) .. last.
        assert device.seqs(cid) == list(range(1, last + 1)), device.name
    for device in devices:
        await device.close()
    log = server.output()
    assert "Traceback" not in log and "Exception inside application" not in log, log
