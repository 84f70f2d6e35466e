"""Every answer under /console/ carries a strict Content-Security-Policy and security headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import console as console_api
from funnelhouse.config import Settings


def client_for(folder: Path) -> TestClient:
    settings = Settings(console_dir=folder, admin_token="admintok")
    return TestClient(Starlette(routes=console_api.console_routes(settings)))


def directives(response) -> dict[str, list[str]]:
    """The policy as {directive: [sources]}, so a test reads it like the browser does."""
    policy = response.headers.get("content-security-policy")
    assert policy, f"no Content-Security-Policy on {response.request.url} ({response.status_code})"
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            assert words[0] not in parsed, f"directive {words[0]} given twice"
            parsed[words[0]] = words[1:]
    return parsed


def assert_secure(response) -> None:
    csp = directives(response)
    # Only the bundle's own script: no inline script, no handler attributes, no eval,
    # no data:/blob: script, no wildcard. An event string that reaches the DOM as markup
    # still cannot run.
    assert csp["script-src"] == ["'self'"]
    assert csp["default-src"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    for name, sources in csp.items():
        for source in sources:
            assert source not in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'",
                                  "'wasm-unsafe-eval'", "*", "http:", "https:", "blob:"), \
                f"{name} allows {source}"
            assert source != "data:" or name == "img-src", f"{name} allows data:"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.fixture()
def built(tmp_path: Path) -> TestClient:
    (tmp_path / "index.html").write_text("<!doctype html><title>funnelhouse</title>")
    (tmp_path / "app.js").write_text("console.log('hi')")
    (tmp_path / "app.css").write_text("body { color: black }")
    return client_for(tmp_path)


@pytest.mark.parametrize("path", ["/console/", "/console/index.html", "/console/app.js",
                                  "/console/app.css", "/console/funnels/new",
                                  "/console/paths?page=%3Cimg%20src%3Dx%3E"])
def test_every_console_file_and_route_has_the_policy(built: TestClient, path: str) -> None:
    response = built.get(path)
    assert response.status_code == 200
    assert_secure(response)


def test_revalidated_missing_and_refused_answers_have_the_policy_too(built: TestClient) -> None:
    etag = built.get("/console/app.js").headers["etag"]
    not_modified = built.get("/console/app.js", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert_secure(not_modified)
    missing = built.get("/console/missing.js")
    assert missing.status_code == 404
    assert_secure(missing)
    traversal = built.get("/console/..%2f..%2fpyproject.toml")
    assert traversal.status_code == 404
    assert_secure(traversal)
    wrong_method = built.post("/console/app.js")
    assert wrong_method.status_code == 405
    assert_secure(wrong_method)
    head = built.head("/console/")
    assert head.status_code == 200
    assert_secure(head)


def test_the_not_built_page_has_the_policy(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        response = client_for(folder).get("/console/")
        assert response.status_code == 503
        assert_secure(response)
