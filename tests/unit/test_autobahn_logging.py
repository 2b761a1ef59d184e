"""autobahn's per-connection debug line is formatted only when it is logged."""

import pprint

import pytest
import txaio
from autobahn.websocket import protocol

from gateway.autobahn_logging import NOT_FORMATTED


@pytest.fixture
def log_level():
    txaio.use_twisted()
    before = txaio.get_global_log_level()
    yield txaio.set_global_log_level
    txaio.set_global_log_level(before)


def test_the_configuration_is_not_formatted_unless_debug_is_logged(log_level):
    config = [("autoPingInterval", 0, "Factory"), ("perMessageCompressionAccept", None, "Protocol")]
    log_level("info")
    assert protocol.pformat(config) == NOT_FORMATTED
    log_level("debug")
    assert protocol.pformat(config) == pprint.pformat(config)


def test_names_and_values_of_per_frame_lines_are_not_formatted_unless_debug_is_logged(log_level):
    """dataReceived and sendData log a coloured method name and byte count for
    every read and write; both modules that do it use the lazy versions."""
    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket

    for module in (protocol, twisted_websocket):
        log_level("info")
        assert (module.hltype(test_the_configuration_is_not_formatted_unless_debug_is_logged), module.hlval(12)) == (
            NOT_FORMATTED,
            NOT_FORMATTED,
        )
        log_level("debug")
        assert module.hltype(log_level) == util.hltype(log_level)
        assert module.hlval(12) == util.hlval(12)
