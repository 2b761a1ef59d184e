"""autobahn formats the arguments of its debug lines before txaio decides to
drop them (txaio logs at info here), so installed from the app's `ready`,
these format only when such a line would be logged:

* `pformat` of the whole protocol configuration, on each connection made:
  about 130 µs per connection here, a few per cent of a connect storm;
* `hltype` and `hlval` (coloured names and values), on every read from a
  socket (`dataReceived`) and every frame written through `sendData`: 1.7 %
  of a server's samples at 200 messages/s into 250 conversations (py-spy).
"""

import pprint

import txaio
from autobahn import util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol

NOT_FORMATTED = "(formatted only when txaio logs at debug)"


def _logged() -> bool:
    return txaio.get_global_log_level() in ("debug", "trace")


def pformat_when_logged(obj, *args, **kwargs) -> str:
    return pprint.pformat(obj, *args, **kwargs) if _logged() else NOT_FORMATTED


def hltype_when_logged(obj) -> str:
    return util.hltype(obj) if _logged() else NOT_FORMATTED


def hlval_when_logged(val, *args, **kwargs) -> str:
    return util.hlval(val, *args, **kwargs) if _logged() else NOT_FORMATTED


def install() -> None:
    protocol.pformat = pformat_when_logged
    for module in (protocol, twisted_websocket):
        module.hltype = hltype_when_logged
        module.hlval = hlval_when_logged
