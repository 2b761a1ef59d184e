"""Domain errors raised by services and selectors.

Each error has a stable `code` (documented in docs/protocol.md), a message for
people, and optional details for programs. REST turns them into HTTP responses
with `http_status`; the WebSocket gateway turns them into error frames.
"""


class ServiceError(Exception):
    code = "error"
    http_status = 400
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, field: str | None = None, **details):
        self.message = message or self.default_message
        self.field = field
        self.details = details
        super().__init__(self.message)

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(ServiceError):
    code = "invalid"
    default_message = "The input is not valid."


class NotFound(ServiceError):
    """Also raised for conversations the caller is not a member of: a non-member
    cannot tell a conversation they may not see from one that does not exist."""

    code = "not_found"
    http_status = 404
    default_message = "Not found."


class PermissionDenied(ServiceError):
    code = "forbidden"
    http_status = 403
    default_message = "You may not do this."


class AuthenticationFailed(ServiceError):
    code = "invalid_credentials"
    http_status = 400
    default_message = "Unable to log in with the given credentials."


class VersionConflict(ServiceError):
    """An edit based on a version that is no longer current; details carry the current state."""

    code = "version_conflict"
    http_status = 409
    default_message = "The message was changed since that version."


class MessageDeleted(ServiceError):
    code = "message_deleted"
    http_status = 409
    default_message = "The message is deleted."


class RateLimited(ServiceError):
    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests; try again later."


class ClientMsgIdConflict(ServiceError):
    code = "client_msg_id_conflict"
    http_status = 409
    default_message = "This client_msg_id was already used for a message in another conversation."
