"""WebSocket routes."""

from django.urls import path

from gateway.consumer import GatewayConsumer

websocket_urlpatterns = [
    path("ws/v1/", GatewayConsumer.as_asgi()),
]
