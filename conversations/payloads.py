"""The JSON shapes of conversations, members and messages, shared by the change
log, live events and the REST API, so every channel says the same thing."""

from .models import Conversation, Membership, Message


def user_payload(user) -> dict:
    return {"id": user.pk, "username": user.get_username()}


def member_payload(membership: Membership) -> dict:
    return {
        "user": user_payload(membership.user),
        "role": membership.role,
        "joined_at": membership.joined_at,
    }


def conversation_payload(conversation: Conversation, memberships=None) -> dict:
    data = {
        "id": conversation.pk,
        "kind": conversation.kind,
        "title": conversation.title,
        "created_by": conversation.created_by_id,
        "created_at": conversation.created_at,
    }
    if memberships is not None:
        data["members"] = [member_payload(m) for m in memberships]
    return data


def message_payload(message: Message) -> dict:
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "sender": message.sender_id,
        "sender_device": message.sender_device_id,
        "client_msg_id": message.client_msg_id,
        "body": message.body,
        "reply_to": message.reply_to_id,
        "version": message.version,
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "deleted": message.is_deleted,
        "deleted_at": message.deleted_at,
    }
