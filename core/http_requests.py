"""The HTTP requests this process is answering, counted so that a draining
server lets them finish before it stops (gateway/drain.py).

Django answers a request on a worker thread that calls back into the event
loop (asgiref), so a request still running when the loop stops waits for it
forever, and the interpreter, which joins those threads at exit, never exits:
the process lives on until it is killed."""

_in_progress = 0


def in_progress() -> int:
    return _in_progress


class CountedHTTP:
    """ASGI: counts the HTTP requests going through `app` while they run."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        global _in_progress
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        _in_progress += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            _in_progress -= 1
