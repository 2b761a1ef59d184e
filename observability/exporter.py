"""Metrics on an address of their own, for processes that serve no HTTP (the listener).

prometheus-client's own small HTTP server, in a daemon thread. The default
address is the loopback (LISTENER_METRICS_BIND=127.0.0.1:9101): reachable by
an agent on the same host, not from outside; bind another address only on a
private network.
"""

import logging

from prometheus_client import start_http_server

from . import metrics

logger = logging.getLogger(__name__)


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a metrics address must be HOST:PORT (e.g. 127.0.0.1:9101), not {bind!r}")
    return host.strip("[]"), int(port)


def serve(bind: str) -> tuple[str, int] | None:
    """Serve this process's metrics on `bind` ("host:port"); "" or metrics off: nothing.
    A port already taken is logged, not fatal: the process's work matters more."""
    if not bind.strip() or not metrics.ENABLED:
        return None
    host, port = parse_bind(bind)
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        logger.error("cannot serve metrics on %s:%s (%s); running without them", host, port, error)
        return None
    logger.info("metrics on http://%s:%s/metrics", host, port)
    return host, port
