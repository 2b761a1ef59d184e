"""/api/v1/docs/ works offline: Swagger UI's files come from this project's static
files (drf-spectacular-sidecar, pinned), not from a CDN."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SWAGGER_UI = "/static/drf_spectacular_sidecar/swagger-ui-dist/"


def fetch(client, url) -> tuple[int, str, bytes]:
    response = client.get(url)
    try:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, response.get("Content-Type", ""), body
    finally:
        response.close()


def test_docs_page_refers_only_to_local_swagger_ui_files():
    client = Client()  # the docs are public (drf-spectacular's SERVE_PERMISSIONS: AllowAny)
    status, content_type, body = fetch(client, "/api/v1/docs/")
    html = body.decode()

    assert status == 200
    assert content_type.startswith("text/html")
    assert not re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html), "the docs page loads something from another site"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "no scripts or stylesheets on the docs page"
    assert all(url.startswith(SWAGGER_UI) for url in assets), assets
    assert SWAGGER_UI + "swagger-ui-bundle.js" in assets


def test_the_swagger_ui_files_the_page_refers_to_are_served():
    client = Client()
    _, _, body = fetch(client, "/api/v1/docs/")
    assets = re.findall(r'(?:src|href)="([^"]+)"', body.decode())

    for url in assets:
        status, content_type, content = fetch(client, url)
        assert status == 200, url
        assert content, url
        if url.endswith(".js"):
            assert "javascript" in content_type, (url, content_type)

    _, _, bundle = fetch(client, SWAGGER_UI + "swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle
