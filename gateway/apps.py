from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The WebSocket gateway: no models, only the live side of the domain apps."""

    name = "gateway"

    def ready(self):
        from . import autobahn_logging

        autobahn_logging.install()
