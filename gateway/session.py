"""The Django session of a WebSocket handshake, only when it carries the
session cookie.

Same-origin pages connect with their login session (gateway/auth.py); programs
and most devices connect with a token and have no use for a session. Channels'
session middleware would still copy the scope, wrap `send` and make a session
store for every connection, and keep them for as long as it lasts.
"""

from channels.sessions import SessionMiddlewareStack
from django.conf import settings


def has_session_cookie(scope) -> bool:
    name = settings.SESSION_COOKIE_NAME.encode("latin-1") + b"="
    return any(key.lower() == b"cookie" and name in value for key, value in scope.get("headers", ()))


class SessionWhenCookie:
    def __init__(self, inner):
        self.inner = inner
        self.with_session = SessionMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        app = self.with_session if has_session_cookie(scope) else self.inner
        return await app(scope, receive, send)
