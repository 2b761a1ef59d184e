from django.apps import AppConfig


class DevicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "devices"

    def ready(self):
        # Registers the OpenAPI description of token auth with drf-spectacular,
        # and the receiver that closes a deactivated user's connections.
        from . import openapi, signals  # noqa: F401
