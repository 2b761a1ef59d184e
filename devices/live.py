"""Live events of the devices app: a revoked device's connections are told to close."""

from core.events import Event, device_group
from core.publish import publish_on_commit


def publish_device_revoked(device) -> None:
    event = Event(kind="device.revoked", payload={"device_id": device.pk}, meta={"device_id": device.pk})
    publish_on_commit(event, [device_group(device.pk)])
