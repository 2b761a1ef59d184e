from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "delivery"

    def ready(self):
        # A user's conversations carry their read state wherever they are listed.
        from conversations.selectors import add_user_annotations

        from .selectors import annotate_read_state

        add_user_annotations(annotate_read_state)
