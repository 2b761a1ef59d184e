"""GET /readyz: may a load balancer send this process new connections?

Ready when PostgreSQL answers, Redis answers (when the channel layer is Redis),
the hub's receive loop (the process's only reader of the channel layer) is
running, and the process is not draining. The first probe starts the hub, so a
process is ready to deliver before its first WebSocket arrives. On SIGTERM the
hub turns draining at once: /readyz answers 503 from then on, for
WS_DRAIN_UNREADY_SECONDS before the connections are closed (drain.py).
Answered before Django (observability/http.py), as JSON: 200 or 503 with each
check's result.
"""

import asyncio

from observability import checks
from observability.http import json_response

from .hub import Hub


async def readyz(scope):
    hub = await Hub.running()
    database, redis = await asyncio.gather(checks.database(), checks.redis())
    results = {
        "database": database or "ok",
        "redis": redis or ("ok" if checks.uses_redis() else "not configured"),
        "layer_receive_loop": "ok" if hub.receiving() else "stopped",
        "draining": "yes" if hub.draining else "no",
    }
    ready = database is None and redis is None and hub.receiving() and not hub.draining
    return json_response(200 if ready else 503, {"status": "ready" if ready else "unready", "checks": results})
