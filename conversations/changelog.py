"""Appending to a conversation's change log, the one place seqs are handed out.

`lock_conversation` takes the conversation's row lock (SELECT ... FOR UPDATE).
Holding it until commit makes the seqs of one conversation commit in the order
they were taken, with no gap: a device that has seen seq N has seen 1..N.
A global serial id does not have this property (id 105 can commit before 104).

Who logs a write (docs/architecture.md, "Who logs which write"):

* the services log their own writes; they run inside `logged_by_caller()`;
* any other ORM write is logged by the signal receivers (`signals.py`), which
  ask `claim_write` first;
* plain SQL on messages is logged by the PostgreSQL triggers (migration 0002),
  which stand aside while the transaction's `realtime.origin` is 'app'.
"""

import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import NamedTuple

from django.db import transaction

from core.errors import NotFound
from core.events import Event, conversation_group, dumps, user_group
from core.publish import publish_on_commit

from .models import Change, Conversation
from .validation import is_id

# Set while the code running logs its writes itself (a service) or deliberately
# not at all (a purge): the ORM receivers stand aside. A ContextVar, so it is
# per thread and per task, never shared between two requests.
_logged_by_caller: ContextVar[bool] = ContextVar("conversations_logged_by_caller", default=False)


@contextmanager
def logged_by_caller():
    """Run a block whose writes to conversations, memberships and messages are
    logged by the block itself, or by nobody.

    Every service runs in it (as a decorator, in place of `transaction.atomic`):
    it appends its own change and schedules its own event, so the ORM receivers
    stand aside for the rows it saves, and so do the PostgreSQL triggers on
    messages. Code that must write without announcing anything (a purge, a
    backfill of history devices must not hear about) can use it too:

        with logged_by_caller():
            Message.objects.filter(conversation_id=7).delete()   # a real delete

    The block runs in a transaction (`atomic`). On PostgreSQL it sets
    `realtime.origin = 'app'` for it and, when it is nested in a transaction
    that goes on afterwards, puts the previous value back, so later plain-SQL
    or ORM writes of that transaction are logged as usual.
    """
    connection = transaction.get_connection()
    nested = connection.in_atomic_block
    token = _logged_by_caller.set(True)
    try:
        with transaction.atomic():
            previous = _mark_origin_app(connection, remember=nested)
            yield
        if nested and connection.vendor == "postgresql":
            _set_origin(connection, previous or "")
    finally:
        _logged_by_caller.reset(token)


def in_logged_by_caller() -> bool:
    return _logged_by_caller.get()


@contextmanager
def receivers_stand_aside():
    """For the receivers' own writes of other rows (passing ownership on): the
    receivers must not log them again. Adds no transaction and no SQL."""
    token = _logged_by_caller.set(True)
    try:
        yield
    finally:
        _logged_by_caller.reset(token)


def _mark_origin_app(connection, *, remember: bool) -> str | None:
    """PostgreSQL: realtime.origin = 'app' for the transaction; the value before,
    when asked to remember it."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        if remember:
            # The MATERIALIZED CTE is read before the outer row is projected.
            cursor.execute(
                "WITH previous AS MATERIALIZED (SELECT current_setting('realtime.origin', true) AS value)"
                " SELECT value, set_config('realtime.origin', 'app', true) FROM previous"
            )
            return cursor.fetchone()[0]
        cursor.execute("SELECT set_config('realtime.origin', 'app', true)")
    return None


def _set_origin(connection, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('realtime.origin', %s, true)", [value])


@dataclass
class Claim:
    """A receiver's hold on one ORM write it logs; `release_write` ends it."""

    connection: object
    release: bool  # realtime.origin was set by this claim and must be put back


# One statement: is the write logged elsewhere, and if not, mark it as ours.
# 'claimed': marked now; 'free': not marked (not asked to); 'ours': already
# marked by a claim still open (rows of one QuerySet.delete()); 'opted_out':
# the transaction set realtime.origin = 'app' itself.
_CLAIM_SQL = """
SELECT CASE
    WHEN coalesce(current_setting('realtime.origin', true), '') <> 'app' THEN
        CASE WHEN NOT %s THEN 'free'
             WHEN (set_config('realtime.origin', 'app', true)
                   || set_config('realtime.orm_write', 'on', true)) IS NOT NULL THEN 'claimed'
        END
    WHEN coalesce(current_setting('realtime.orm_write', true), '') = 'on' THEN 'ours'
    ELSE 'opted_out'
END
"""


def claim_write(using=None, *, mark: bool) -> Claim | None:
    """For a receiver about to log an ORM write: None when the write is logged
    elsewhere (inside `logged_by_caller`, or on PostgreSQL in a transaction that
    set `realtime.origin = 'app'` itself: the documented opt-out). Otherwise a
    Claim; with `mark`, the triggers on messages stand aside until it is
    released (they would log the same row again)."""
    if _logged_by_caller.get():
        return None
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise RuntimeError("ORM writes of conversations, memberships and messages must run inside transaction.atomic")
    if connection.vendor != "postgresql":
        return Claim(connection, release=False)
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [mark])
        state = cursor.fetchone()[0]
    if state == "opted_out":
        return None
    return Claim(connection, release=state == "claimed")


def release_write(claim: Claim) -> None:
    if claim.release:
        with claim.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('realtime.origin', '', true), set_config('realtime.orm_write', '', true)")
        claim.release = False


def writes_logged_elsewhere(using=None) -> bool:
    """Whether ORM writes made now are logged by someone other than the
    receivers, or by nobody (see `claim_write`). Must run in a transaction."""
    if _logged_by_caller.get():
        return True
    connection = transaction.get_connection(using)
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(current_setting('realtime.origin', true), '') = 'app'"
            " AND coalesce(current_setting('realtime.orm_write', true), '') <> 'on'"
        )
        return cursor.fetchone()[0]


def lock_conversation(conversation_id: int) -> Conversation:
    """The conversation, row-locked until the surrounding transaction ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_conversation must run inside transaction.atomic")
    conversation = (
        Conversation.objects.select_for_update().filter(pk=conversation_id).first() if is_id(conversation_id) else None
    )
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def take_next_seq(conversation: Conversation) -> int:
    """Reserve the conversation's next seq; `conversation` must be locked.

    Written with a plain UPDATE (the base manager), not save(): the seq is the
    log's own bookkeeping, not a change the ORM receivers should look at."""
    conversation.last_seq += 1
    Conversation._base_manager.filter(pk=conversation.pk).update(last_seq=conversation.last_seq)
    return conversation.last_seq


def lock_and_take_next_seq(conversation_id) -> int:
    """Row-lock the conversation and reserve its next seq in one statement
    (UPDATE ... RETURNING), for the send path: the lock is held from here to
    commit, so what runs after this should be a few statements. NotFound for
    a conversation that does not exist."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_and_take_next_seq must run inside transaction.atomic")
    if not is_id(conversation_id):
        raise NotFound("Conversation not found.")
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {Conversation._meta.db_table} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq",
            [conversation_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise NotFound("Conversation not found.")
    return row[0]


def _pk(value):
    return getattr(value, "pk", value)


def record_change(
    conversation: Conversation,
    seq: int,
    kind: str,
    payload: dict,
    *,
    actor=None,
    message=None,
) -> Change:
    """Record the change at a seq taken with `take_next_seq` (or
    `lock_and_take_next_seq`) and publish it after commit.

    `conversation`, `actor` and `message` are model instances or their ids."""
    if isinstance(conversation, Conversation) and seq != conversation.last_seq:
        raise RuntimeError("record_change must use the seq just taken for this conversation")
    # Round-trip through JSON so the stored payload and the live frame agree exactly.
    stored_payload = json.loads(dumps(payload))
    change = Change.objects.create(
        conversation_id=_pk(conversation),
        seq=seq,
        kind=kind,
        payload=stored_payload,
        actor_id=_pk(actor),
        message_id=_pk(message),
    )
    publish_on_commit(change_event(change), groups_of(change))
    return change


def append_change(conversation: Conversation, kind: str, payload: dict, **options) -> Change:
    """Take the next seq and record the change at it (see `record_change`)."""
    return record_change(conversation, take_next_seq(conversation), kind, payload, **options)


def redact_logged_bodies(message_id: int) -> None:
    """Erase a deleted message's body from its earlier log entries, so catch-up
    after a delete does not hand out the deleted text."""
    for change in Change.objects.filter(message_id=message_id):
        if change.payload.get("body"):
            change.payload["body"] = ""
            change.payload["redacted"] = True
            change.save(update_fields=["payload"])


class ChangeFacts(NamedTuple):
    """What a change's event and its routing need, for a writer that has them
    without a Change instance (the send statement on the event loop, which
    would otherwise build a model only to read these four fields back)."""

    conversation_id: int
    seq: int
    kind: str
    payload: dict


def change_event(change: Change | ChangeFacts) -> Event:
    return Event(
        kind=change.kind,
        conversation_id=change.conversation_id,
        seq=change.seq,
        payload=change.payload,
        meta=event_meta(change.kind, change.payload),
    )


def about_a_member(kind: str) -> bool:
    """Whether a change of this kind is about one member (their user is in the
    payload, and the gateway needs to know who)."""
    return kind.startswith("member.")


def event_meta(kind: str, payload: dict) -> dict:
    """What the gateway needs to route an event that is not in its frame: the
    user a member change is about."""
    user = payload.get("user") if about_a_member(kind) else None
    return {"user_id": user["id"]} if user else {}


def users_told_directly(change: Change | ChangeFacts) -> list[int]:
    """Users who must hear of a change even though they may not follow the
    conversation (yet, or any more): the members of a new conversation, a
    member just added or removed."""
    if change.kind == Change.Kind.CONVERSATION_CREATED:
        return sorted({member["user"]["id"] for member in change.payload.get("members", ())})
    if change.kind in (Change.Kind.MEMBER_ADDED, Change.Kind.MEMBER_REMOVED):
        return [change.payload["user"]["id"]]
    return []


def groups_of(change: Change | ChangeFacts) -> list[str]:
    """The channel-layer groups a change goes to: the one routing rule, used by
    the services' publishing and by the plain-SQL listener alike."""
    return [conversation_group(change.conversation_id), *(user_group(u) for u in users_told_directly(change))]
