"""REST shapes of receipt cursors and a message's receipts."""

from rest_framework import serializers

from conversations.serializers import seq_field
from devices.serializers import UserSerializer


class SeqSerializer(serializers.Serializer):
    seq = seq_field(help_text="Everything up to this seq; a seq past the conversation's last is capped to it.")


class ReceiptCursorSerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    read_seq = serializers.IntegerField()
    delivered_seq = serializers.IntegerField()


class MessageReceiptsSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    seq = serializers.IntegerField()
    recipients = serializers.IntegerField(help_text="The other current members.")
    delivered_count = serializers.IntegerField()
    read_count = serializers.IntegerField()
    delivered_to = UserSerializer(many=True)
    read_by = UserSerializer(many=True)


def message_receipts_data(receipts, users: dict) -> dict:
    return {
        "message_id": receipts.message_id,
        "seq": receipts.seq,
        "recipients": receipts.recipients,
        "delivered_count": len(receipts.delivered_to),
        "read_count": len(receipts.read_by),
        "delivered_to": [users[i] for i in receipts.delivered_to],
        "read_by": [users[i] for i in receipts.read_by],
    }


class MemberReceiptSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    delivered_seq = serializers.IntegerField()
    read_seq = serializers.IntegerField()


class ConversationReceiptsSerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    receipts = MemberReceiptSerializer(
        many=True, help_text="Every current member, you included, ascending user_id; 0 when never acknowledged."
    )
