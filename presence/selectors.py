"""Reads on presence. A user's presence is visible to the users who share a
conversation with them; to anyone else it looks like an unknown user."""

from django.db.models import Count, F

from conversations.models import Membership
from core.errors import NotFound
from core.lookups import AnyOf

from .models import Status, UserPresence


def contacts_of(user_id: int) -> list[int]:
    """Users sharing at least one conversation with `user_id` (the user included)."""
    conversations = Membership.objects.active().filter(user_id=user_id).values("conversation_id")
    return sorted(
        set(Membership.objects.active().filter(conversation_id__in=conversations).values_list("user_id", flat=True))
        | {user_id}
    )


def presence_payload(user_id: int, presence: UserPresence | None) -> dict:
    if presence is None:
        return _payload(user_id)
    return _payload(user_id, presence.status, presence.last_seen_at)


def _payload(user_id: int, status: str = Status.OFFLINE, last_seen_at=None) -> dict:
    """A user's presence as every reader shows it (a user with no row is offline)."""
    return {"user_id": user_id, "status": status, "last_seen_at": last_seen_at}


def presences_for(viewer) -> list[dict]:
    contacts = contacts_of(viewer.pk)
    found = {p.user_id: p for p in UserPresence.objects.filter(user_id__in=contacts)}
    return [presence_payload(user_id, found.get(user_id)) for user_id in contacts]


def presence_of(viewer, user_id: int) -> dict:
    if user_id not in contacts_of(viewer.pk):
        raise NotFound("User not found.")
    return presence_payload(user_id, UserPresence.objects.filter(user_id=user_id).first())


def visible_presences(viewer, user_ids) -> list[dict]:
    """The presence of those of `user_ids` the viewer may see, ascending; the
    others are left out, exactly like users that do not exist."""
    visible = sorted(set(user_ids) & set(contacts_of(viewer.pk)))
    found = {p.user_id: p for p in UserPresence.objects.filter(user_id__in=visible)}
    return [presence_payload(user_id, found.get(user_id)) for user_id in visible]


def live_presence_routes(user_ids, max_members: int) -> tuple[dict[int, dict], dict[int, list[int]]]:
    """For a batch of users whose presence changed: their presence now, and for
    each, the conversations small enough (at most `max_members` active members)
    to carry it live. Three queries however many users.

    Pushing a user's presence to every conversation they are in costs, in a
    room of N, N frames per change and N² when everyone comes online together;
    beyond `max_members` only explicit subscribers (`presence.subscribe`) get it.
    """
    user_ids = list(user_ids)
    # Rows, not model instances: a storm's flush announces a thousand users.
    found = {
        user_id: (status, last_seen_at)
        for user_id, status, last_seen_at in UserPresence.objects.filter(AnyOf(F("user_id"), user_ids)).values_list(
            "user_id", "status", "last_seen_at"
        )
    }
    theirs = Membership.objects.active().filter(AnyOf(F("user_id"), user_ids))
    small = (
        Membership.objects.active()
        .filter(conversation_id__in=theirs.values("conversation_id"))
        .values("conversation_id")
        .annotate(members=Count("id"))
        .filter(members__lte=max_members)
        .values("conversation_id")
    )
    conversations: dict[int, list[int]] = {user_id: [] for user_id in user_ids}
    for user_id, conversation_id in theirs.filter(conversation_id__in=small).values_list("user_id", "conversation_id"):
        conversations[user_id].append(conversation_id)
    payloads = {user_id: _payload(user_id, *found.get(user_id, ())) for user_id in user_ids}
    return payloads, conversations
