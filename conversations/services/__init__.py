"""Writes on conversations, members and messages: one transaction each.

Every write that changes a conversation takes the conversation's row lock,
appends to its change log and publishes its event after commit. REST views,
the WebSocket gateway and the admin all call these functions, so a change
looks the same whichever way it was made.

Each runs inside `changelog.logged_by_caller()` (its transaction): it logs its
own writes, so the ORM receivers (signals.py) and the plain-SQL triggers leave
them alone. An ORM write made anywhere else is logged by those receivers.
"""

from .conversations import create_conversation, rename_conversation
from .members import add_member, remove_member
from .messages import SendResult, delete_message, edit_message, send_message, send_message_async

__all__ = [
    "SendResult",
    "add_member",
    "create_conversation",
    "delete_message",
    "edit_message",
    "remove_member",
    "rename_conversation",
    "send_message",
    "send_message_async",
]
