"""Fixtures for the chat page's browser tests: a Daphne process of the project
on the test database, and Debian's Chromium driven by Playwright.

Playwright downloads no browser here: it is pointed at CHROMIUM (default
/usr/bin/chromium, Debian's `chromium` package, which .ci/run installs). Without
it or the playwright package the tests are skipped (a failure with
REQUIRE_SERVICES=1). Screenshots go to SCREENSHOT_DIR (default
.test-artifacts/screenshots/).
"""

import os
import time
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, require
from tests.gateway.harness import ROOT, started_on_first_use

SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", ROOT / ".test-artifacts" / "screenshots"))
PASSWORD = "correct horse battery staple"

# Short typing timeout and coalescing windows, so the tests watch them quickly.
PAGE_SERVER_ENV = {
    "TYPING_TIMEOUT": "2",
    "RECEIPT_COALESCE_SECONDS": "0.1",
    "PRESENCE_COALESCE_SECONDS": "0.2",
    "WS_RECONCILE_SECONDS": "0.5",
    # Set for the test process only (see `browser`): the server keeps Django's check.
    "DJANGO_ALLOW_ASYNC_UNSAFE": "",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/web/test_chat_page.py" in item.nodeid:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def _page_server(django_db_setup):
    with started_on_first_use(**PAGE_SERVER_ENV) as server:
        yield server


@pytest.fixture
def live_server_url(_page_server, transactional_db):
    """The server's base URL; the test's data is committed so the server sees it."""
    server = _page_server()
    yield f"http://127.0.0.1:{server.port}"
    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's sync API keeps an event loop
    running in this thread, which makes Django refuse the tests' own ORM calls
    (creating users) as "async"; they are plain synchronous calls, so the check
    is lifted while the browser runs, in this process only."""
    require("browser")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshot():
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take


class PageErrors(list):
    """Uncaught errors of the pages a test opened: none is expected."""


@pytest.fixture
def contexts(browser):
    """`contexts(viewport=...)` opens a browser context (one person's browser); all are closed after."""
    opened = []
    errors = PageErrors()

    def open_context(**options):
        context = browser.new_context(**options)
        context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
        opened.append(context)
        return context

    open_context.errors = errors
    yield open_context
    for context in opened:
        context.close()
    assert not errors, errors
