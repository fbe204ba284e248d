"""The console at /, the API docs at /docs (assets shipped, no key needed) and the CORS policy."""
from __future__ import annotations

import pytest

from api import ServiceConfig, create_app
from api.keys import hash_key

KEY = "web-key"


@pytest.fixture(scope="module")
def client(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("web") / "log.sqlite3"
    app = create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)], cors_origins=["https://app.example"]),
                     bundle=german_bundle)
    return app.test_client()


@pytest.mark.parametrize("path, mimetype", [("/", "text/html"), ("/static/console.js", "text/javascript"),
                                            ("/static/console.css", "text/css"), ("/docs", "text/html"),
                                            ("/docs/init.js", "text/javascript"),
                                            ("/docs/assets/swagger-ui-bundle.js", "text/javascript"),
                                            ("/docs/assets/swagger-ui.css", "text/css")])
def test_pages_and_assets_need_no_key(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == mimetype and response.data


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/..%2Fconfig.py", "/docs/assets/index.html",
                                  "/docs/assets/..%2F__init__.py"])
def test_only_the_shipped_assets_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_the_pages_fetch_nothing_from_other_sites(client):
    for path in ("/", "/docs"):
        html = client.get(path).get_data(as_text=True)
        assert "http://" not in html and "https://" not in html, path
    script = client.get("/static/console.js").data
    assert b'"/v1/schema"' in script and b'"/v1/recourse"' in script and b"http" not in script  # the same origin


def test_cors_preflight_for_an_allowed_origin_needs_no_key(client):
    asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}
    response = client.open("/v1/recourse", method="OPTIONS", headers=asked)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Origin" in response.headers["Vary"]
    other = client.open("/v1/recourse", method="OPTIONS", headers={**asked, "Origin": "https://evil.example"})
    assert other.status_code == 401 and "Access-Control-Allow-Origin" not in other.headers


def test_cors_headers_on_answers_to_an_allowed_origin_only(client):
    ok = client.get("/v1/schema", headers={"Origin": "https://app.example", "Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    refused = client.get("/v1/schema", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "https://app.example"
    plain = client.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_any_origin(german_bundle, tmp_path):
    app = create_app(ServiceConfig(database=tmp_path / "l.db", api_key_hashes=[hash_key(KEY)], cors_origins=["*"]),
                     bundle=german_bundle)
    response = app.test_client().get("/openapi.json", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
