"""ASGI entry point: HTTP (Django, the REST API, the admin) and the WebSocket gateway.

Run it with Daphne: `daphne realtime_sync.asgi:application`. The operators'
endpoints (/healthz, /readyz, /metrics) are answered in front of Django, see
observability/http.py.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_sync.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.gc_tuning import tune_for_server  # noqa: E402
from core.http_requests import CountedHTTP  # noqa: E402
from gateway.health import readyz  # noqa: E402
from gateway.session import SessionWhenCookie  # noqa: E402
from observability import reporter  # noqa: E402
from observability.http import Endpoints, healthz, metrics_endpoint  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": Endpoints(
            CountedHTTP(django_asgi_app), {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_endpoint}
        ),
        # The Origin check happens in the gateway, where it can answer with a close code.
        # The session's user is looked up there too, and only for a handshake
        # without a token (Channels' AuthMiddleware would look it up for every
        # handshake, on its one shared database thread).
        "websocket": SessionWhenCookie(URLRouter(websocket_urlpatterns)),
    }
)

# Start-up is over: what it made is frozen out of the garbage collector's work.
tune_for_server()

# The status page's heartbeat of this process (a daemon thread; see observability/reporter.py).
reporter.start("web")
