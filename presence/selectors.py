"""Reads on presence. A user's presence is visible to the users who share a
conversation with them; to anyone else it looks like an unknown user."""

from conversations.models import Membership
from core.errors import NotFound

from .models import Status, UserPresence


def contacts_of(user_id: int) -> list[int]:
    """Users sharing at least one conversation with `user_id` (the user included)."""
    conversations = Membership.objects.active().filter(user_id=user_id).values("conversation_id")
    return sorted(
        set(Membership.objects.active().filter(conversation_id__in=conversations).values_list("user_id", flat=True))
        | {user_id}
    )


def presence_payload(user_id: int, presence: UserPresence | None) -> dict:
    return {
        "user_id": user_id,
        "status": presence.status if presence else Status.OFFLINE,
        "last_seen_at": presence.last_seen_at if presence else None,
    }


def presences_for(viewer) -> list[dict]:
    contacts = contacts_of(viewer.pk)
    found = {p.user_id: p for p in UserPresence.objects.filter(user_id__in=contacts)}
    return [presence_payload(user_id, found.get(user_id)) for user_id in contacts]


def presence_of(viewer, user_id: int) -> dict:
    if user_id not in contacts_of(viewer.pk):
        raise NotFound("User not found.")
    return presence_payload(user_id, UserPresence.objects.filter(user_id=user_id).first())
