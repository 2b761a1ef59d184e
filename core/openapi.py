"""OpenAPI pieces every app's REST views share: the error body, documented once,
so each endpoint can list the errors it may answer with in one line; and the
schema generator, which states the text rules every request field enforces."""

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    400: "Invalid input. `field` names the offending field; `details.fields` lists every field's errors.",
    401: "Missing, invalid or revoked credentials.",
    403: "Authenticated, but not allowed to do this (or a session request without its CSRF token).",
    404: "Not found. A conversation you are not a member of is reported exactly like one that does not exist.",
    409: "Conflicts with the current state; `code` says which and `details` carries the current state.",
    415: "The request body is not JSON (`unsupported_media_type`): bodies are `application/json` only.",
    429: "Too many requests.",
}


class ErrorSerializer(serializers.Serializer):
    """Every error response: a stable machine code plus a message for people."""

    code = serializers.CharField(help_text="Stable error code, e.g. not_found, invalid, version_conflict.")
    message = serializers.CharField()
    field = serializers.CharField(required=False, help_text="The input field the error is about, if any.")
    details = serializers.DictField(required=False, help_text="Machine-readable facts about the error.")


def error_responses(*statuses: int, authenticated: bool = True, notes: dict[int, str] | None = None) -> dict:
    """Response docs for the given error statuses (401 added for authenticated views).

    `notes` adds to a status's description what is particular to the endpoint:
    for a 400, the rules the schema cannot express because they depend on stored
    state (which users exist, what kind a conversation is) or on several
    parameters together; for a 429, which limit it is."""
    notes = notes or {}
    assert set(notes) <= set(statuses), "a note for a status the endpoint does not list"
    codes = sorted(set(statuses) | ({401} if authenticated else set()))
    return {
        code: OpenApiResponse(
            ErrorSerializer, description=" ".join(filter(None, [ERROR_DESCRIPTIONS[code], notes.get(code)]))
        )
        for code in codes
    }


class NotBlankValidator:
    """A serializer validator: the text must have a character other than whitespace
    (for fields that keep their whitespace, `trim_whitespace=False`, where DRF's own
    blank check only refuses ""). The schema shows it as a `pattern`."""

    message = "This field may not be blank."

    def __call__(self, value):
        if isinstance(value, str) and not value.strip():
            raise serializers.ValidationError(self.message, code="blank")


# The characters str.strip() removes (Python's whitespace), spelled out so that the
# patterns below mean the same in Python (the server, the test data generators) and
# in ECMA-262 (OpenAPI's regular expressions), whose \s differs.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Every text field refuses NUL (DRF's CharField; PostgreSQL text cannot hold it).
NO_NUL_PATTERN = r"^[^\x00]*$"
# ... and one that must not be blank needs a character that is neither.
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def _json_pattern(pattern: str) -> str:
    return pattern.replace(r"\x", r"\u00")  # ECMA-262 reads both; drf-spectacular writes \u


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's generator, plus the rules DRF applies to request text
    that it leaves out: no NUL characters, and for a field that may not be blank,
    a character other than whitespace (DRF trims before its blank check)."""

    def _map_basic_serializer(self, serializer, direction):
        self._direction = direction
        return super()._map_basic_serializer(serializer, direction)

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if getattr(self, "_direction", None) != "request" or not _is_text(field, schema):
            return
        if "pattern" in schema or "oneOf" in schema:
            return
        not_blank = not field.allow_blank and (
            field.trim_whitespace or any(isinstance(v, NotBlankValidator) for v in field.validators)
        )
        schema["pattern"] = _json_pattern(NOT_BLANK_PATTERN if not_blank else NO_NUL_PATTERN)


def _is_text(field, schema) -> bool:
    return (
        isinstance(field, serializers.CharField)
        and schema.get("type") == "string"
        and "format" not in schema
        and any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators)
    )
