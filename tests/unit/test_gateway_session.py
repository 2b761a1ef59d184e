"""A handshake gets a Django session only when it carries the session cookie."""

from gateway.session import has_session_cookie


def scope_with(*headers):
    return {"type": "websocket", "headers": list(headers)}


def test_a_session_cookie_among_others_is_found():
    assert has_session_cookie(scope_with((b"cookie", b"theme=dark; sessionid=abc123")))
    assert has_session_cookie(scope_with((b"Cookie", b"sessionid=abc123")))


def test_no_cookie_or_other_cookies_mean_no_session():
    assert not has_session_cookie(scope_with())
    assert not has_session_cookie(scope_with((b"cookie", b"csrftoken=x; theme=dark")))
    assert not has_session_cookie(scope_with((b"authorization", b"Bearer sessionid=1")))
    assert not has_session_cookie({"type": "websocket"})
