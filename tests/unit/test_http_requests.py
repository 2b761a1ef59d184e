"""core.http_requests: the HTTP requests a draining server waits for."""

import asyncio

import pytest

from core import http_requests
from core.http_requests import CountedHTTP


def test_an_http_request_counts_while_it_runs_even_when_it_fails():
    seen_during = []

    async def app(scope, receive, send):
        seen_during.append(http_requests.in_progress())
        if scope.get("fail"):
            raise RuntimeError("the view failed")

    counted = CountedHTTP(app)
    before = http_requests.in_progress()
    asyncio.run(counted({"type": "http"}, None, None))
    with pytest.raises(RuntimeError):
        asyncio.run(counted({"type": "http", "fail": True}, None, None))
    asyncio.run(counted({"type": "websocket"}, None, None))
    assert seen_during == [before + 1, before + 1, before]
    assert http_requests.in_progress() == before
