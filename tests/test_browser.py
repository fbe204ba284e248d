"""A real headless browser (Playwright driving Debian's chromium) on the console, /docs and an audit report.

The console at ``/`` is loaded, connected with a key, filled with the example applicant and
submitted; the actions it shows must be the API's answer to the same request.  ``/docs`` must
render the OpenAPI document with Swagger UI from the shipped assets, and an audit report must
open with its headline.  Screenshots are written to ``$RECOURSE_SCREENSHOTS`` (default
``build/screenshots``).  ``make test`` installs chromium when it is missing; without it (or without
Playwright) these tests are skipped, unless ``RECOURSE_REQUIRE_BROWSER=1`` (set by ``.ci/run``).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
KEY = "browser-key"
CHROMIUM = next((p for p in (os.environ.get("RECOURSE_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)


def _require_browser():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        reason = "Playwright is not installed"
    else:
        reason = None if CHROMIUM else "no chromium executable (apt-get install chromium)"
    if reason:
        if os.environ.get("RECOURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def live(german_bundle, tmp_path_factory):
    """The app served over real HTTP on a free loopback port (werkzeug's threaded server)."""
    from werkzeug.serving import make_server

    from api import ServiceConfig, create_app
    from api.keys import hash_key

    db = tmp_path_factory.mktemp("browser") / "log.sqlite3"
    app = create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)]), bundle=german_bundle)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _shots() -> Path:
    out = Path(os.environ.get("RECOURSE_SCREENSHOTS", REPO / "build" / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_the_console_shows_the_apis_answer(live, browser):
    app, url = live
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/")
    assert page.title().startswith("recourse")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")  # the keyboard works as well as the mouse
    page.wait_for_selector("#applicant:not([hidden])")
    assert page.locator("#fields select, #fields input").count() == 20
    assert "months" in page.inner_text("label[for=f-duration]")  # labels and units from the schema
    page.click("#example")
    page.click("#submit")
    page.wait_for_selector("#answer:not([hidden])")
    shown = page.locator("#actions li").all_inner_texts()
    decision = page.inner_text("#decision")
    page.screenshot(path=str(_shots() / "console.png"), full_page=True)
    # the same request straight to the API (the log returns the same answer content)
    example = json.loads((REPO / "datasets" / "german_credit" / "examples" / "denied_applicant.json").read_text())
    client = app.test_client()
    body = client.get("/openapi.json").get_json()
    applicant = next(iter(body["paths"]["/v1/recourse"]["post"]["requestBody"]["content"]["application/json"]
                          ["examples"].values()))["value"]["applicant"]
    answer = client.post("/v1/recourse", json={"applicant": applicant, "alternatives": 3},
                         headers={"Authorization": f"Bearer {KEY}"}).get_json()
    assert shown == [a["text"] for a in answer["actions"]] and shown
    assert decision.startswith(f"Decision: {answer['decision']['label']}")
    assert page.locator("#alternatives > li").count() == len(answer["alternatives"])
    assert page.locator("#reasons li").count() == len(answer["reasons"])
    assert set(example) == set(applicant)
    # a phone-sized screen: the form stays usable (one column, nothing wider than the screen)
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(url + "/")
    phone.fill("#api-key", KEY)
    phone.click("#connect")
    phone.wait_for_selector("#applicant:not([hidden])")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(_shots() / "console-phone.png"))


def test_a_wrong_key_and_a_bad_value_are_shown_as_such(live, browser):
    _, url = live
    page = browser.new_page()
    page.goto(url + "/")
    page.fill("#api-key", "wrong")
    page.click("#connect")
    page.wait_for_function("document.getElementById('access-status').textContent.includes('wrong API key')")
    page.fill("#api-key", KEY)
    page.click("#connect")
    page.wait_for_selector("#applicant:not([hidden])")
    page.click("#example")
    page.evaluate("document.getElementById('f-duration').value = '500'")  # outside the range
    page.evaluate("document.getElementById('applicant').noValidate = true")
    page.click("#submit")
    page.wait_for_function("document.getElementById('form-status').textContent.includes('duration')")
    assert page.get_attribute("#f-duration", "aria-invalid") == "true"


def test_the_api_docs_render_offline(live, browser):
    _, url = live
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert "recourse" in page.inner_text(".swagger-ui .info")
    assert page.locator(".opblock").count() >= 8
    assert all(r.startswith(url) for r in requested), [r for r in requested if not r.startswith(url)]  # no CDN
    page.screenshot(path=str(_shots() / "docs.png"))


def test_an_audit_report_opens_with_its_headline(browser, tmp_path):
    from typer.testing import CliRunner

    import cli

    out = tmp_path / "audit"
    done = CliRunner().invoke(cli.app, ["audit", "--dataset", "german", "--group-by", "status_sex,age", "--out", str(out)])
    assert done.exit_code == 0, done.output
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto((out / "report.html").as_uri())
    assert page.locator("h1").count() == 1 and page.inner_text("h1")
    first = page.locator("section").first
    assert first.get_attribute("id") == "findings"  # the report leads with its findings
    assert "denied applicants" in first.inner_text() and "personal status and sex" in first.inner_text()
    page.screenshot(path=str(_shots() / "audit-report.png"))
