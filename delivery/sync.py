"""Reads behind a device's catch-up: where each conversation resumes, and the
changes to send.

Seqs are gapless per conversation, so how many changes a device missed is
`last_seq - cursor`, known without reading them: a conversation past the limit
is answered with a reset (reload over REST) without touching its log.
"""

from dataclasses import dataclass

from django.db import connection

from conversations.models import Conversation, Membership

RESET_TOO_MANY_CHANGES = "too_many_changes"
RESET_CURSOR_AHEAD = "cursor_ahead"  # the device claims a seq the server never had
RESET_REJOINED = "rejoined"  # the device's cursor predates the user's latest joining


@dataclass(frozen=True)
class Resume:
    """Where one conversation's stream resumes for a device."""

    conversation_id: int
    cursor: int  # the last seq the device has (after a reset: the last seq there is)
    last_seq: int
    reset: str | None = None
    # For a conversation the user has left since: the removal's seq; nothing after it is sent.
    until: int | None = None


@dataclass(frozen=True)
class SyncPlan:
    resumes: list[Resume]
    gone: list[int]  # cursors for conversations the user is not in (or that do not exist)


def plan_sync(user_id: int, cursors: dict[int, int], max_changes: int) -> SyncPlan:
    """Decide, per conversation, where a device with these cursors resumes.

    Conversations the device does not name (joined while it was offline) resume
    from just before the user joined. Conversations the user has left since the
    cursor resume up to and including the removal.
    """
    resumes = []
    active_ids = set()
    for conversation_id, joined_seq, last_seq in _memberships_now(user_id):
        active_ids.add(conversation_id)
        first = max(joined_seq - 1, 0)
        given = cursors.get(conversation_id)
        if given is None:
            resumes.append(_resume(conversation_id, first, last_seq, max_changes))
        elif given > last_seq:
            resumes.append(Resume(conversation_id, last_seq, last_seq, reset=RESET_CURSOR_AHEAD))
        elif given < first:
            resumes.append(Resume(conversation_id, last_seq, last_seq, reset=RESET_REJOINED))
        else:
            resumes.append(_resume(conversation_id, given, last_seq, max_changes))

    gone = []
    left = _left_seqs(user_id, [c for c in cursors if c not in active_ids])
    for conversation_id, given in cursors.items():
        if conversation_id in active_ids:
            continue
        left_seq = left.get(conversation_id)
        if left_seq is not None and given < left_seq and left_seq - given <= max_changes:
            resumes.append(Resume(conversation_id, given, left_seq, until=left_seq))
        else:
            gone.append(conversation_id)
    return SyncPlan(resumes=resumes, gone=sorted(gone))


# Every handshake plans a sync, so these two reads are plain statements: built
# with the ORM, the building cost three times the query's round trip (a tenth
# of a server's time in a connect storm). Both are portable SQL.


def _memberships_now(user_id: int) -> list[tuple[int, int, int]]:
    """(conversation id, joined seq, the conversation's last seq) of the user's active memberships."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.conversation_id, m.joined_seq, c.last_seq FROM {Membership._meta.db_table} m"
            f" JOIN {Conversation._meta.db_table} c ON c.id = m.conversation_id"
            " WHERE m.user_id = %s AND m.is_active = %s",
            [user_id, True],
        )
        return cursor.fetchall()


def _left_seqs(user_id: int, conversation_ids: list[int]) -> dict[int, int]:
    """Conversation id -> the seq of the user's removal, for those of `conversation_ids` they left."""
    if not conversation_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT conversation_id, left_seq FROM {Membership._meta.db_table}"
            f" WHERE user_id = %s AND is_active = %s AND conversation_id IN ({', '.join(['%s'] * len(conversation_ids))})",
            [user_id, False, *conversation_ids],
        )
        return dict(cursor.fetchall())


def _resume(conversation_id: int, cursor: int, last_seq: int, max_changes: int) -> Resume:
    if last_seq - cursor > max_changes:
        return Resume(conversation_id, last_seq, last_seq, reset=RESET_TOO_MANY_CHANGES)
    return Resume(conversation_id, cursor, last_seq)
