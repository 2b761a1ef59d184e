"""Who is connecting, and from where.

Three ways in, tried in order:
  * `Authorization: Bearer <token>` header (programs);
  * `?token=<token>` query parameter (browsers cannot set headers on a WebSocket);
  * the Django session cookie (same-origin pages): the session gets a device of its own.
A browser always sends `Origin`; it must name one of ALLOWED_HOSTS, so another
site cannot open a socket with a visitor's cookie. Programs send no Origin.
"""

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import get_user
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host

from core.db import on_db_pool
from devices.authentication import touch
from devices.models import Device
from devices.selectors import device_for_token, is_active_device
from devices.services import device_for_session
from presence import services as presence_services

from . import close_codes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused(Exception):
    code: int
    reason: str


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def check_origin(scope) -> None:
    origin = _header(scope, b"origin")
    if origin is None:
        return
    host, _ = split_domain_port(urlsplit(origin).netloc)
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        raise Refused(close_codes.FORBIDDEN_ORIGIN, "origin not allowed")


def token_from(scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() in ("bearer", "token") and token.strip():
            return token.strip()
        raise Refused(close_codes.UNAUTHORIZED, "malformed Authorization header")
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


@on_db_pool
def _identify(scope, token) -> Device:
    if token is not None:
        device = device_for_token(token)
        if device is None:
            raise Refused(close_codes.UNAUTHORIZED, "invalid or revoked token")
    else:
        session = scope.get("session")
        # Django's own lookup of a session's user (it checks the session's
        # auth hash, and the fallback keys); it only reads request.session.
        user = get_user(SimpleNamespace(session=session)) if session is not None else None
        if user is None or not user.is_authenticated:
            raise Refused(close_codes.UNAUTHORIZED, "no token and no logged-in session")
        device = device_for_session(user, session)
        if device is None:
            raise Refused(close_codes.UNAUTHORIZED, "this session's device was revoked")
    touch(device)
    return device


def kept_for_connection(device: Device) -> Device:
    """What a connection keeps of its device while it lasts: the ids, the
    device's name and the user's username and active flag, which is all the
    requests use. The rest (the password's hash, the email, the dates) stays
    deferred: read, it would be loaded from the database. A whole device and
    user are 1.3 KiB of an idle connection's 37."""
    users = type(device.user)
    kept = _partial(device, {"id", "user_id", "name"})
    kept.user = _partial(device.user, {users._meta.pk.attname, users.USERNAME_FIELD, "is_active"})
    return kept


def _partial(instance, keep: set[str]):
    """A copy of a model instance with only the `keep` fields loaded."""
    # from_db takes the values in the model's field order.
    names = [field.attname for field in type(instance)._meta.concrete_fields if field.attname in keep]
    return type(instance).from_db(instance._state.db, names, [getattr(instance, name) for name in names])


async def identify(scope) -> Device:
    """The active device (with its user) behind a WebSocket handshake, or Refused."""
    check_origin(scope)
    return await _identify(scope, token_from(scope))


@on_db_pool
def still_active_then_online(device, connection_id: str) -> tuple[bool, bool]:
    """Run once the device's groups are joined: is the device still active (a
    revoke that committed before the join has no event here), and if it is,
    mark it online, in one statement on PostgreSQL. (active, whether the
    user's presence changed). A failure to mark it online is logged, and
    only the check is made again: presence is state that the next refresh
    sets right."""
    try:
        return presence_services.online_if_active(device=device, connection_id=connection_id)
    except DatabaseError as error:
        logger.warning("marking device %s online failed (%s: %s)", device.pk, type(error).__name__, error)
        return is_active_device(device.pk), False
