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
