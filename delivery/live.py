"""Live receipts: cursor moves are broadcast to the conversation, coalesced.

When a hundred members' devices acknowledge one message, the conversation gets
one `receipts.updated` event per window listing every member whose cursors
moved, not a hundred events each fanned out to a hundred devices. Cursors only
move forward, so the newest value per member is all that is sent.
"""

from django.conf import settings
from django.db import transaction

from core.coalesce import Coalescer
from core.events import Event, conversation_group
from core.publish import send_async


async def _broadcast(conversation_id: int, moved: dict) -> None:
    event = Event(
        kind="receipts.updated",
        conversation_id=conversation_id,
        payload={"receipts": [moved[user_id] for user_id in sorted(moved)]},
    )
    await send_async(event, [conversation_group(conversation_id)])


def _merge(pending: dict, moved: dict) -> dict:
    """Fold cursor moves; hooks from different threads may arrive out of order,
    so keep the highest of each cursor, never just the last one handed in."""
    merged = dict(pending)
    for user_id, cursor in moved.items():
        known = merged.get(user_id)
        merged[user_id] = (
            cursor
            if known is None
            else {
                "user_id": user_id,
                "delivered_seq": max(known["delivered_seq"], cursor["delivered_seq"]),
                "read_seq": max(known["read_seq"], cursor["read_seq"]),
            }
        )
    return merged


receipts = Coalescer(lambda: settings.RECEIPT_COALESCE_SECONDS, _broadcast, _merge, name="receipts")


def publish_receipt_on_commit(cursor) -> None:
    moved = {
        cursor.user_id: {
            "user_id": cursor.user_id,
            "delivered_seq": cursor.delivered_seq,
            "read_seq": cursor.read_seq,
        }
    }
    transaction.on_commit(lambda: receipts.submit(cursor.conversation_id, moved))
