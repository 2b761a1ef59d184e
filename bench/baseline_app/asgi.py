"""ASGI entry point of the tutorial chat: `daphne bench.baseline_app.asgi:application`
(run from the project root, with DJANGO_SETTINGS_MODULE=bench.baseline_app.settings)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline_app.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from .consumers import ChatConsumer  # noqa: E402

websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>\w+)/$", ChatConsumer.as_asgi()),
]

# The tutorial wraps the router in AuthMiddlewareStack too; it needs sessions and a
# database, and this chat uses neither, so it is left out.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
