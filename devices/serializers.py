"""REST shapes of log-in, users and devices."""

from rest_framework import serializers

from .models import Device


class UserSerializer(serializers.Serializer):
    """A user as others see them; reads a user or a `user_payload` dict."""

    id = serializers.IntegerField()
    username = serializers.CharField()


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"}, write_only=True)
    device_name = serializers.CharField(
        max_length=Device._meta.get_field("name").max_length,
        help_text="Shown in the device list, e.g. 'Pixel 8' or 'work laptop'.",
    )


class DeviceSerializer(serializers.ModelSerializer):
    """A device; `current` marks the one the request was made with (context "device")."""

    is_active = serializers.BooleanField(read_only=True)
    current = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = ["id", "name", "created_at", "last_used_at", "revoked_at", "is_active", "current"]
        read_only_fields = fields

    def get_current(self, device) -> bool:
        current = self.context.get("device")
        return current is not None and current.pk == device.pk


class LoginResultSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown only once; send it as `Authorization: Bearer <token>`.")
    device = DeviceSerializer()
    user = UserSerializer()


class MeSerializer(serializers.Serializer):
    """The logged-in user, and the device the request was made with."""

    id = serializers.IntegerField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField(help_text="May use the admin site.")
    device = DeviceSerializer(
        allow_null=True,
        help_text="The device whose token made the request; null for a browser session "
        "(its WebSocket device is named in the WebSocket `hello`).",
    )
