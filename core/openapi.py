"""OpenAPI pieces every app's REST views share: the error body, documented once,
so each endpoint can list the errors it may answer with in one line."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    400: "Invalid input. `field` names the offending field; `details.fields` lists every field's errors.",
    401: "Missing, invalid or revoked credentials.",
    403: "Authenticated, but not allowed to do this (or a session request without its CSRF token).",
    404: "Not found. A conversation you are not a member of is reported exactly like one that does not exist.",
    409: "Conflicts with the current state; `code` says which and `details` carries the current state.",
    429: "Too many requests; retry after the number of seconds in the Retry-After header.",
}


class ErrorSerializer(serializers.Serializer):
    """Every error response: a stable machine code plus a message for people."""

    code = serializers.CharField(help_text="Stable error code, e.g. not_found, invalid, version_conflict.")
    message = serializers.CharField()
    field = serializers.CharField(required=False, help_text="The input field the error is about, if any.")
    details = serializers.DictField(required=False, help_text="Machine-readable facts about the error.")


def error_responses(*statuses: int, authenticated: bool = True) -> dict:
    """Response docs for the given error statuses (401 added for authenticated views)."""
    codes = sorted(set(statuses) | ({401} if authenticated else set()))
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}
