"""The client's pure parts: backoff, the close-code policy, the cursor stores, typed events."""

import json
import random

import pytest
from realtime_sync_client import Backoff, JsonFileCursorStore, LogEvent, MemoryCursorStore, close_codes


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter_in_the_upper_half():
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.ceiling(10_000) == 8.0  # no overflow for a very long outage
    rng = random.Random(1)
    for attempt in range(8):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        ceiling = backoff.ceiling(attempt)
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 150  # jittered: devices that dropped together spread out


def test_backoff_refuses_nonsense():
    for bad in ({"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)


@pytest.mark.parametrize("code", [4401, 4403, 4410])
def test_closes_that_forbid_a_retry(code):
    assert not close_codes.reconnects(code)


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1011, 4408, 4429, 4430, 4431, 4500, 4503, 4999])
def test_every_other_close_is_followed_by_a_reconnect(code):
    assert close_codes.reconnects(code)


def test_json_file_store_round_trips_and_replaces_the_file_whole(tmp_path):
    path = tmp_path / "cursors.json"
    store = JsonFileCursorStore(path)
    assert store.load() == {}  # no file yet
    store.save({12: 45, 3: 7})
    assert json.loads(path.read_text()) == {"cursors": {"3": 7, "12": 45}}
    assert JsonFileCursorStore(path).load() == {3: 7, 12: 45}  # a new process reads it back
    store.save({12: 46})
    assert JsonFileCursorStore(path).load() == {12: 46}
    assert [p.name for p in tmp_path.iterdir()] == ["cursors.json"]  # no temporary file left behind


def test_memory_store_keeps_a_copy():
    cursors = {1: 2}
    store = MemoryCursorStore(cursors)
    cursors[1] = 99
    assert store.load() == {1: 2}


def test_log_event_gives_the_message_of_message_kinds_and_ignores_unknown_fields():
    payload = {
        "id": 312,
        "conversation_id": 12,
        "seq": 43,
        "sender": 1,
        "sender_device": 7,
        "client_msg_id": "a-0193",
        "body": "On my way",
        "reply_to": None,
        "version": 1,
        "created_at": "2025-05-02T09:30:02.410Z",
        "edited_at": None,
        "deleted": False,
        "deleted_at": None,
        "added_in_a_later_version": True,
    }
    frame = {"type": "event", "kind": "message.created", "conversation_id": 12, "seq": 43, "payload": payload}
    message = LogEvent.from_frame(frame).message
    assert (message.id, message.body, message.version, message.redacted) == (312, "On my way", 1, False)
    renamed = {"type": "event", "kind": "conversation.renamed", "conversation_id": 12, "seq": 44, "payload": {}}
    assert LogEvent.from_frame(renamed).message is None
