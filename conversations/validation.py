"""Input rules shared by every entry point (REST, WebSocket, admin)."""

from django.conf import settings

from core.errors import InvalidInput


def clean_text(value: str, field: str) -> str:
    """Refuse what PostgreSQL text and UTF-8 cannot hold: NUL, and lone
    surrogates (JSON can spell both, as \\u0000 and \\ud800), before the
    database or an encoder meets them."""
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters.", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode (no lone surrogates).", field=field) from None
    return value


def clean_body(body) -> str:
    if not isinstance(body, str):
        raise InvalidInput("body must be a string.", field="body")
    clean_text(body, "body")
    if not body.strip():
        raise InvalidInput("body must not be blank.", field="body")
    if len(body) > settings.MESSAGE_BODY_MAX_CHARS:
        raise InvalidInput(f"body is longer than {settings.MESSAGE_BODY_MAX_CHARS} characters.", field="body")
    return body


def clean_client_msg_id(client_msg_id) -> str:
    if not isinstance(client_msg_id, str) or not client_msg_id.strip():
        raise InvalidInput("client_msg_id must be a non-empty string.", field="client_msg_id")
    clean_text(client_msg_id, "client_msg_id")
    if len(client_msg_id) > settings.CLIENT_MSG_ID_MAX_CHARS:
        raise InvalidInput(
            f"client_msg_id is longer than {settings.CLIENT_MSG_ID_MAX_CHARS} characters.",
            field="client_msg_id",
        )
    return client_msg_id


def clean_title(title) -> str:
    if title is None:
        return ""
    if not isinstance(title, str):
        raise InvalidInput("title must be a string.", field="title")
    title = clean_text(title, "title").strip()
    if len(title) > settings.CONVERSATION_TITLE_MAX_CHARS:
        raise InvalidInput(f"title is longer than {settings.CONVERSATION_TITLE_MAX_CHARS} characters.", field="title")
    return title


# The largest value a PostgreSQL bigint (seqs, ids) holds.
MAX_BIGINT = 2**63 - 1


def is_integer(value) -> bool:
    """Whether `value` is a JSON integer: Python's bool is an int, JSON's true is not."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_id(value) -> bool:
    """Whether `value` can be a row id (a positive bigint); anything else finds nothing."""
    return is_integer(value) and 0 < value <= MAX_BIGINT


def clean_non_negative_int(value, field: str) -> int:
    if not is_integer(value) or not 0 <= value <= MAX_BIGINT:
        raise InvalidInput(f"{field} must be a non-negative integer.", field=field)
    return value
