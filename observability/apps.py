from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Service status"
    default_auto_field = "django.db.models.BigAutoField"
