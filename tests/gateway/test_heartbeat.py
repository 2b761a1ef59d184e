"""Heartbeats against a real server whose heartbeat timeout is one second.

A device that stays silent is closed with HEARTBEAT_TIMEOUT once the timeout has
passed (not before); a device that pings keeps its connection, and every ping is
answered with a `pong` echoing its `ref`.
"""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from gateway import close_codes

from .harness import Device, started_on_first_use

HEARTBEAT_TIMEOUT = 1.0
HEARTBEAT_INTERVAL = 0.3
PING_EVERY = 0.3
KEEP_ALIVE_FOR = 2.5


@pytest.fixture(scope="module")
def _heartbeat_server(django_db_setup):
    with started_on_first_use(
        WS_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT), WS_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL)
    ) as heartbeat_server:
        yield heartbeat_server


@pytest.fixture
def heartbeat_server(_heartbeat_server, transactional_db):
    """This module's own server; its tests commit for real so it sees their data.

    Afterwards, wait until the server has finished with the test's connections
    (each ends by writing its device's presence), so emptying the database does
    not race the server's last writes.
    """
    yield _heartbeat_server()
    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


async def _token(make_user, make_device, name):
    user = await database_sync_to_async(make_user)()
    _, token = await database_sync_to_async(make_device)(user, name)
    return token


async def test_hello_announces_the_servers_heartbeat_settings(heartbeat_server, make_user, make_device):
    device = await Device(heartbeat_server.url, await _token(make_user, make_device, "laptop"), name="h").connect()
    try:
        assert device.hello["heartbeat_timeout"] == HEARTBEAT_TIMEOUT
        assert device.hello["heartbeat_interval"] == HEARTBEAT_INTERVAL
        # The interval a client is told to ping at leaves room inside the timeout.
        assert device.hello["heartbeat_interval"] < device.hello["heartbeat_timeout"]
    finally:
        await device.close()


async def test_a_silent_device_is_closed_after_the_timeout(heartbeat_server, make_user, make_device):
    token = await _token(make_user, make_device, "silent")
    started = time.monotonic()
    silent = await Device(heartbeat_server.url, token, name="silent").connect()
    code = await silent.wait_closed(timeout=HEARTBEAT_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    assert code == close_codes.HEARTBEAT_TIMEOUT, code
    # Not before the timeout (measured from before the handshake, so never shorter
    # than the server's own measure), and not much after it (the sweep runs every timeout/4).
    assert HEARTBEAT_TIMEOUT <= elapsed < HEARTBEAT_TIMEOUT + 3, elapsed
    # The hello came first, and nothing answered a request: it sent none. (Its own
    # presence going online may follow the hello as an event.)
    assert silent.frames[0]["type"] == "hello"
    assert all(f["type"] == "event" and "conversation_id" not in f for f in silent.frames[1:]), silent.frames


async def test_a_pinging_device_stays_connected_and_gets_every_pong(heartbeat_server, make_user, make_device):
    pinger = await Device(heartbeat_server.url, await _token(make_user, make_device, "pinger"), name="pinger").connect()
    # A silent device on the same server at the same time: the sweep is running,
    # so the pinger surviving is down to its pings.
    silent = await Device(heartbeat_server.url, await _token(make_user, make_device, "quiet"), name="quiet").connect()
    try:
        started = time.monotonic()
        pongs = []
        while time.monotonic() - started < KEEP_ALIVE_FOR:
            await asyncio.sleep(PING_EVERY)  # pacing only
            reply = await pinger.request("ping", timeout=HEARTBEAT_TIMEOUT)
            pongs.append(reply)
        assert time.monotonic() - started >= 2.0
        assert len(pongs) >= 6
        refs = [p["ref"] for p in pongs]
        assert all(p["type"] == "pong" for p in pongs), pongs
        assert len(set(refs)) == len(refs)
        assert all(isinstance(p["server_time"], str) and p["server_time"] for p in pongs)
        # Every ping's reply echoes exactly that ping's ref, in order.
        assert [f["ref"] for f in pinger.frames if f["type"] == "pong"] == refs

        # The silent one was closed meanwhile, well before the pinger stopped pinging.
        assert await silent.wait_closed(timeout=2) == close_codes.HEARTBEAT_TIMEOUT
        assert silent.close_code == close_codes.HEARTBEAT_TIMEOUT

        # Still open: a request is still answered and no close was seen.
        assert pinger.close_code is None and not pinger._closed.is_set()
        assert (await pinger.request("ping", timeout=HEARTBEAT_TIMEOUT))["type"] == "pong"
        assert pinger.close_code is None

        # Once it stops pinging, it is closed like any silent device.
        stopped = time.monotonic()
        assert await pinger.wait_closed(timeout=HEARTBEAT_TIMEOUT + 5) == close_codes.HEARTBEAT_TIMEOUT
        # (the server's clock started at the last ping, a round trip before `stopped`)
        assert time.monotonic() - stopped >= HEARTBEAT_TIMEOUT - 0.2
    finally:
        await pinger.close()
        await silent.close()
