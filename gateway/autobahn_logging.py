"""autobahn's WebSocket protocol formats its whole configuration with pprint
each time a connection is made, for a debug line that txaio drops unless it
logs at debug or trace: about 130 µs per connection here, a few per cent of a
connect storm. Installed (from the app's `ready`), autobahn's `pformat`
formats only when that line would be logged."""

import pprint

import txaio
from autobahn.websocket import protocol

NOT_FORMATTED = "(formatted only when txaio logs at debug)"


def pformat_when_logged(obj, *args, **kwargs) -> str:
    if txaio.get_global_log_level() in ("debug", "trace"):
        return pprint.pformat(obj, *args, **kwargs)
    return NOT_FORMATTED


def install() -> None:
    protocol.pformat = pformat_when_logged
