from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self):
        # ORM writes made outside the services are logged and published (signals.py).
        from . import signals

        signals.connect()
