"""The OpenAPI description of device-token authentication (registered in apps.py)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    """Documents DeviceTokenAuthentication as HTTP bearer auth."""

    target_class = "devices.authentication.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The token returned by POST /api/v1/auth/login: `Authorization: Bearer <token>`.",
        }
