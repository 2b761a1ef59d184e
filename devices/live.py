"""Live events of the devices app: the connections of a revoked device, or of a
deactivated user, are told to close."""

from core.events import Event, device_group, user_group
from core.publish import publish_on_commit


def publish_device_revoked(device) -> None:
    event = Event(kind="device.revoked", payload={"device_id": device.pk}, meta={"device_id": device.pk})
    publish_on_commit(event, [device_group(device.pk)])


def publish_user_deactivated(user_id: int) -> None:
    event = Event(kind="user.deactivated", payload={"user_id": user_id}, meta={"user_id": user_id})
    publish_on_commit(event, [user_group(user_id)])
