"""REST shapes of presence."""

from rest_framework import serializers

from .models import Status


class PresenceSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Status.choices)
    last_seen_at = serializers.DateTimeField(allow_null=True)
