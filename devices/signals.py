"""A user deactivated anywhere (the admin, the shell, a script) loses their
live connections at once, not at their next reconnect.

Deactivation is a plain save of the user model, made outside this project's
services, so a post_save receiver notices it and publishes `user.deactivated`
to the user's group after commit; the gateway closes every connection of the
user with 4410, as for a revoked device. The token checks already refuse an
inactive user's devices, and the gateway's periodic reconciliation closes
the connections of one whose event was lost.
"""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from .live import publish_user_deactivated


@receiver(post_save, sender=get_user_model(), dispatch_uid="devices.user_deactivated")
def close_connections_of_inactive_users(sender, instance, created, update_fields=None, **kwargs):
    if created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    publish_user_deactivated(instance.pk)
