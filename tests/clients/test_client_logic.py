"""The Client's bookkeeping against a scripted server: cursors and de-duplication,
retries of unacknowledged requests, the offline queue, the close-code policy,
heartbeats and typing refreshes."""

import asyncio

import pytest
from realtime_sync_client import Backoff, Client, ClientStopped, MemoryCursorStore, RequestError

from .scripted_server import ScriptedServer, sent

FAST = Backoff(initial=0.01, maximum=0.02)
TIMEOUT = 5


def event(conversation_id, seq, kind="message.created", **payload):
    return {"type": "event", "kind": kind, "conversation_id": conversation_id, "seq": seq, "payload": payload}


class Seen:
    """Collects callbacks; `until` waits for a condition on what was collected."""

    def __init__(self):
        self.items: list = []
        self.changed = asyncio.Condition()

    async def __call__(self, item, *more):
        async with self.changed:
            self.items.append((item, *more) if more else item)
            self.changed.notify_all()

    async def until(self, condition):
        async with asyncio.timeout(TIMEOUT), self.changed:
            await self.changed.wait_for(lambda: condition(self.items))


async def test_events_at_or_below_the_cursor_are_dropped_and_the_cursor_is_saved():
    store = MemoryCursorStore({12: 5})
    seen = Seen()
    syncs = []

    async def script(peer):
        syncs.append(await peer.handshake(before_ok=[event(12, 4), event(12, 5), event(12, 6), event(12, 7)]))
        await peer.send(event(12, 7))  # live, a duplicate of the catch-up
        await peer.send(event(12, 8))
        await peer.serve_forever()

    async with (
        ScriptedServer(script) as server,
        Client(server.url, token="t", cursor_store=store, on_event=seen) as client,
    ):
        await seen.until(lambda items: items and items[-1].seq == 8)
        assert [e.seq for e in seen.items] == [6, 7, 8]
        assert client.cursors == {12: 8}
    assert syncs[0]["cursors"] == {"12": 5}
    assert store.load() == {12: 8}


async def test_a_restart_resumes_from_the_stored_cursors(tmp_path):
    from realtime_sync_client import JsonFileCursorStore

    path = tmp_path / "cursors.json"
    syncs = []

    async def first(peer):
        syncs.append(await peer.handshake(before_ok=[event(3, 1, "conversation.created"), event(3, 2)]))
        await peer.serve_forever()

    async def second(peer):
        syncs.append(await peer.handshake())
        await peer.serve_forever()

    async with ScriptedServer(first, second) as server:
        seen = Seen()
        async with Client(server.url, token="t", cursor_store=JsonFileCursorStore(path), on_event=seen):
            await seen.until(lambda items: len(items) == 2)
        async with Client(server.url, token="t", cursor_store=JsonFileCursorStore(path)):
            pass
    assert [s["cursors"] for s in syncs] == [{}, {"3": 2}]


async def test_reset_calls_back_for_a_reload_then_continues_from_last_seq():
    resets, seen = Seen(), Seen()

    async def script(peer):
        reset = {"type": "reset", "conversation_id": 12, "last_seq": 40, "reason": "too_many_changes"}
        await peer.handshake(before_ok=[reset, event(12, 41)], sync_result={"cursors": {}, "reset": [], "gone": [30]})
        await peer.serve_forever()

    store = MemoryCursorStore({12: 3, 30: 5})
    async with (
        ScriptedServer(script) as server,
        Client(server.url, token="t", cursor_store=store, on_reset=resets, on_event=seen) as client,
    ):
        await seen.until(lambda items: len(items) == 1)
        assert [(r.conversation_id, r.last_seq, r.reason) for r in resets.items] == [(12, 40, "too_many_changes")]
        assert seen.items[0].seq == 41
        assert client.cursors == {12: 41}  # conversation 30 came back in `gone` and was dropped


async def test_an_unacknowledged_send_goes_again_with_the_same_client_msg_id():
    async def drops_after_the_send(peer):
        await peer.handshake()
        await peer.expect("send")  # it committed, say, but the reply never left
        peer.ws.transport.abort()

    async def answers_duplicate(peer):
        await peer.handshake()
        retry = await peer.expect("send")
        await peer.ok(retry, sent(retry, duplicate=True))
        await peer.serve_forever()

    async with (
        ScriptedServer(drops_after_the_send, answers_duplicate) as server,
        Client(server.url, token="t", backoff=FAST) as client,
    ):
        result = await asyncio.wait_for(client.send(12, "hello", reply_to=311), TIMEOUT)
        assert result.duplicate is True
        assert client.pending() == []
    first, retry = server.peers[0].of_type("send")[0], server.peers[1].of_type("send")[0]
    assert first["ref"] != retry["ref"]
    assert {**first, "ref": None} == {**retry, "ref": None}  # same client_msg_id, body and reply_to
    assert len(first["client_msg_id"]) <= 64


async def test_sends_made_offline_are_queued_and_go_in_order_once_connected():
    async def script(peer):
        await peer.handshake()
        await peer.serve_forever()

    async with ScriptedServer(script) as server:
        client = Client(server.url, token="t")
        sends = [asyncio.create_task(client.send(1, f"m{i}")) for i in range(3)]
        await asyncio.sleep(0)
        assert [fields["body"] for _, fields in client.pending()] == ["m0", "m1", "m2"]
        await client.start()
        results = await asyncio.wait_for(asyncio.gather(*sends), TIMEOUT)
        await client.close()
    assert [f["body"] for f in server.peers[0].of_type("send")] == ["m0", "m1", "m2"]
    assert [r.client_msg_id for r in results] == [f["client_msg_id"] for f in server.peers[0].of_type("send")]


async def test_a_rate_limited_request_is_sent_again_after_the_hint():
    async def script(peer):
        await peer.handshake()
        first = await peer.expect("send")
        await peer.rate_limited(first, retry_after=0.05)
        await peer.serve_forever()

    async with ScriptedServer(script) as server, Client(server.url, token="t") as client:
        result = await asyncio.wait_for(client.send(1, "again", client_msg_id="c-1"), TIMEOUT)
    assert result.client_msg_id == "c-1"
    assert [f["client_msg_id"] for f in server.peers[0].of_type("send")] == ["c-1", "c-1"]


async def test_a_send_refused_for_the_moment_is_not_overtaken_by_a_later_one_of_its_conversation():
    """Writes of a conversation go one at a time: while the first waits out its
    hint, the second of that conversation stays unsent and another
    conversation's goes."""

    async def script(peer):
        await peer.handshake()
        first = await peer.expect("send")
        await peer.rate_limited(first, retry_after=0.2)
        other = await peer.expect("send")
        assert other["conversation_id"] == 2, other
        await peer.ok(other, sent(other))
        await peer.serve_forever()

    async with ScriptedServer(script) as server, Client(server.url, token="t") as client:
        sends = [
            asyncio.create_task(client.send(1, "first")),
            asyncio.create_task(client.send(1, "second")),
            asyncio.create_task(client.send(2, "elsewhere")),
        ]
        await asyncio.wait_for(asyncio.gather(*sends), TIMEOUT)
    assert [f["body"] for f in server.peers[0].of_type("send")] == ["first", "elsewhere", "first", "second"]


async def test_other_errors_reach_the_caller_with_code_field_and_details():
    async def script(peer):
        await peer.handshake()
        edit = await peer.expect("edit")
        details = {"current_version": 2, "current_body": "v2"}
        await peer.send(
            {"type": "error", "ref": edit["ref"], "code": "version_conflict", "message": "m", "details": details}
        )
        await peer.serve_forever()

    async with ScriptedServer(script) as server, Client(server.url, token="t") as client:
        with pytest.raises(RequestError) as raised:
            await asyncio.wait_for(client.edit(1, 5, "v2'", 1), TIMEOUT)
        assert raised.value.code == "version_conflict" and raised.value.details["current_body"] == "v2"
        assert client.pending() == []


@pytest.mark.parametrize("code", [4401, 4403])
async def test_a_refusal_that_forbids_retrying_stops_the_client(code):
    async def refuse(peer):
        await peer.ws.close(code)

    disconnects = Seen()
    async with ScriptedServer(refuse, refuse) as server:
        client = Client(server.url, token="t", backoff=FAST, on_disconnected=disconnects)
        with pytest.raises(ClientStopped) as stopped:
            await asyncio.wait_for(client.start(), TIMEOUT)
        assert stopped.value.code == code
        assert client.attempts == 1 and len(server.peers) == 1
        assert disconnects.items == [(code, None)]
        with pytest.raises(ClientStopped):
            await client.send(1, "too late")
        await client.close()


async def test_a_revoked_device_stops_and_fails_what_was_waiting():
    async def revoke(peer):
        await peer.handshake()
        await peer.expect("send")
        await peer.ws.close(4410)

    async with ScriptedServer(revoke) as server, Client(server.url, token="t", backoff=FAST) as client:
        with pytest.raises(ClientStopped) as stopped:
            await asyncio.wait_for(client.send(1, "x"), TIMEOUT)
        assert stopped.value.code == 4410
        assert client.attempts == 1


async def test_overloaded_is_retried_after_its_hint_and_a_plain_4503_after_a_backoff():
    async def overloaded(peer):
        details = {"retry_after": 0.07}
        await peer.send({"type": "error", "ref": None, "code": "overloaded", "message": "", "details": details})
        await peer.ws.close(4503)

    async def going_away(peer):
        await peer.ws.close(4503)

    async def welcome(peer):
        await peer.handshake()
        await peer.serve_forever()

    disconnects = Seen()
    backoff = Backoff(initial=0.02, maximum=0.04)
    async with (
        ScriptedServer(overloaded, going_away, welcome) as server,
        Client(server.url, token="t", backoff=backoff, on_disconnected=disconnects) as client,
    ):
        assert client.attempts == 3
    (first_code, first_delay), (second_code, second_delay) = disconnects.items[:2]
    assert (first_code, first_delay) == (4503, 0.07)  # the hint, as given
    assert second_code == 4503 and 0.02 <= second_delay <= 0.04  # backoff.delay(1): half to all of initial * 2


async def test_a_lost_connection_is_retried_with_growing_backoff_and_the_count_resets_after_a_sync():
    async def drop(peer):
        peer.ws.transport.abort()

    async def welcome_then_drop(peer):
        await peer.handshake()
        peer.ws.transport.abort()

    async def welcome(peer):
        await peer.handshake()
        await peer.serve_forever()

    disconnects = Seen()
    backoff = Backoff(initial=0.01, maximum=1.0)
    async with (
        ScriptedServer(drop, drop, drop, welcome_then_drop, welcome) as server,
        Client(server.url, token="t", backoff=backoff, on_disconnected=disconnects) as client,
    ):
        await disconnects.until(lambda items: len(items) == 4)
        await client.wait_connected()
    delays = [delay for _, delay in disconnects.items]
    assert [backoff.ceiling(n) / 2 <= d <= backoff.ceiling(n) for n, d in enumerate(delays[:3])] == [True] * 3
    assert delays[3] <= backoff.ceiling(0)  # a connection that synced starts the count again


async def test_no_pong_within_the_heartbeat_timeout_drops_the_connection_and_reconnects():
    async def silent(peer):
        await peer.handshake(heartbeat_interval=0.05, heartbeat_timeout=0.1)
        while True:
            await peer.recv()  # never answers

    async def welcome(peer):
        await peer.handshake()
        await peer.serve_forever()

    async with ScriptedServer(silent, welcome) as server, Client(server.url, token="t", backoff=FAST):
        await asyncio.wait_for(server.until_connections(2), TIMEOUT)
    assert server.peers[0].of_type("ping")


async def test_typing_is_refreshed_until_a_send_in_that_conversation():
    async def script(peer):
        await peer.handshake(typing_timeout=0.1)
        await peer.serve_forever()

    async with ScriptedServer(script) as server, Client(server.url, token="t") as client:
        peer = server.peers[0]
        await client.start_typing(4)
        # Refreshed every typing_timeout / 2.
        await peer.until(lambda frames: len([f for f in frames if f["type"] == "typing"]) >= 3)
        await client.send(4, "done typing")
        refreshes = len(peer.of_type("typing"))
        # Proving an absence takes time: three refresh intervals pass without one.
        await asyncio.sleep(0.15)
        await client.ping()
        assert all(f["state"] == "start" for f in peer.of_type("typing"))
        assert len(peer.of_type("typing")) == refreshes  # no refresh after the send
