"""The operators' HTTP endpoints, answered before Django: /healthz, /readyz, /metrics.

They sit in front of the Django application (`Endpoints`, in realtime_sync/asgi.py)
rather than in its URL map because the callers are machines, not browsers: a
Kubernetes probe or a load balancer comes by the pod's IP address (not one of
ALLOWED_HOSTS) over plain HTTP (SECURE_SSL_REDIRECT would answer 301), and no
session, CSRF or host middleware has anything to do with them. That also keeps
a probe cheap.

/metrics is off (404) unless METRICS_TOKEN is set, and then answers only
`Authorization: Bearer <METRICS_TOKEN>`: the figures say how busy the service is
and which errors it meets, which is nobody else's business. Do not route it
through the public proxy either (README, "Operating it").
"""

import hmac
import json

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from . import metrics

JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class Endpoints:
    """ASGI: the HTTP paths in `routes` (path -> async handler(scope) returning
    (status, headers, body)) are answered here; everything else goes to `app`."""

    def __init__(self, app, routes: dict):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            status, headers, body = json_response(405, {"status": "error", "detail": "GET only"})
            headers = [*headers, (b"allow", b"GET, HEAD")]
        else:
            status, headers, body = await handler(scope)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def json_response(status: int, data: dict):
    return status, JSON, json.dumps(data).encode()


async def healthz(scope):
    """The process is alive and its event loop turns: nothing else is asked."""
    return json_response(200, {"status": "ok"})


async def metrics_endpoint(scope):
    token = settings.METRICS_TOKEN
    if not token or not metrics.ENABLED:
        return json_response(404, {"status": "error", "detail": "Not found."})
    offered = dict(scope.get("headers", [])).get(b"authorization", b"")
    if not hmac.compare_digest(offered, b"Bearer " + token.encode()):
        status, headers, body = json_response(401, {"status": "error", "detail": "Bearer token required."})
        return status, [*headers, (b"www-authenticate", b'Bearer realm="metrics"')], body
    return (
        200,
        [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"cache-control", b"no-store")],
        generate_latest(REGISTRY),
    )
