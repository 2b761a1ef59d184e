"""bench/: the many-conversations layout, what compare.py passes to each side, and
the load generator's count of acknowledged messages lost."""

import argparse
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402
import loadgen  # noqa: E402


def many(**overrides):
    values = {"scenario": "many", "members": 1000, "conversations": 250, "min_size": 2, "max_size": 50}
    return argparse.Namespace(**{**values, "layout_seed": 1, **overrides})


def test_the_default_layout_is_1000_devices_in_250_conversations_of_2_to_50():
    sizes = loadgen.conversation_sizes(1000, 250, 2, 50, seed=1)
    assert len(sizes) == 250
    assert sum(sizes) == 1000
    assert min(sizes) == 2 and max(sizes) == 50
    counts = Counter(sizes)
    assert counts[2] == 132 and counts[50] == 1  # as bench/README.md and the docstring say
    assert loadgen.layout_summary(loadgen.conversation_layout(many()))["mean_recipients_per_message"] == 9.57


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_every_device_is_in_exactly_one_conversation(seed):
    layout = loadgen.conversation_layout(many(layout_seed=seed))
    assert sorted(i for members in layout for i in members) == list(range(1000))
    specs = loadgen.device_specs(layout, [f"t{i}" for i in range(1000)])
    for number, members in enumerate(layout):
        assert all(specs[i].conversation == number and specs[i].token == f"t{i}" for i in members)


def test_the_layout_depends_on_the_seed_only():
    assert loadgen.conversation_layout(many()) == loadgen.conversation_layout(many())
    assert loadgen.conversation_layout(many()) != loadgen.conversation_layout(many(layout_seed=2))


def test_small_layouts_keep_their_bounds():
    for members, conversations in [(100, 25), (60, 30), (500, 10)]:
        sizes = loadgen.conversation_sizes(members, conversations, 2, 50, seed=3)
        assert sum(sizes) == members and len(sizes) == conversations
        assert all(2 <= size <= 50 for size in sizes)


def test_scenario_one_is_everyone_in_one_conversation():
    layout = loadgen.conversation_layout(argparse.Namespace(scenario="one", members=5))
    assert layout == [[0, 1, 2, 3, 4]]


def test_the_baseline_gets_no_option_of_the_product_alone():
    passed = ["--scenario", "many", "--db-name", "x", "--redis-db", "11", "--diagnose", "--commit=abc", "--rate", "5"]
    assert compare.for_baseline(passed) == ["--scenario", "many", "--redis-db", "11", "--rate", "5"]


def device(index, conversation, seen=()):
    return SimpleNamespace(spec=SimpleNamespace(index=index, conversation=conversation), seen=set(seen))


def test_lost_acknowledged_counts_acknowledged_messages_missing_on_devices_kept_connected():
    clients = [
        device(0, 0, seen={(0, 1)}),  # the sender has its own message
        device(1, 0, seen=set()),  # connected to the end, never got it: lost
        device(2, 0, seen=set()),  # closed by the server: not a loss
        device(3, 1, seen=set()),  # another conversation: not a recipient
    ]
    stats = loadgen.Stats(members=4)
    stats.acked = {(0, 1)}
    stats.unexpected_closes = [{"device": 2, "code": 4430, "reason": ""}]
    assert loadgen.lost_acknowledged(clients, stats) == 1
    clients[1].seen.add((0, 1))
    assert loadgen.lost_acknowledged(clients, stats) == 0
