"""URL map: the chat page at /, the admin (with its service status page), the REST
API under /api/v1/, its OpenAPI schema and docs.

A path under /api/ that matches no endpoint answers the JSON 404 of core.api_errors.
/healthz, /readyz and /metrics are answered before Django (realtime_sync/asgi.py)."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api_errors import unrouted
from observability.views import status_page

api_v1 = [
    path("", include("devices.urls")),
    path("", include("conversations.urls")),
    path("", include("delivery.urls")),
    path("", include("presence.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("admin/status/", status_page, name="realtime-status"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Everything else under /api/ is a JSON 404, like every other REST error.
    re_path(r"^api(?:/|$)", unrouted),
    # The chat page, its log-in and log-out (the admin's "View site" leads to /).
    path("", include("web.urls")),
]
