"""The portal in a real headless Chromium (Debian's, driven by Playwright): a new user signs
in, creates an ephemeral environment from the form, deploys a small web app from the page,
waits for it on the live events, follows its endpoint link and sees the app's answer, then
destroys the environment. Every page is saved as a screenshot (checked not blank) and run
through axe-core's serious and critical rules."""

from __future__ import annotations

import json
import shutil
import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from _apisupport import Live

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"

WEB_APP = textwrap.dedent(
    """\
    apiVersion: score.dev/v1b1
    metadata: {name: greeter}
    containers:
      web:
        image: none
        command:
          - python3
          - -c
          - |
            import http.server, os
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"hello from greeter")
            http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
        readinessProbe:
          httpGet: {port: 8080, path: /}
    service:
      ports:
        web: {port: 8080, targetPort: 8080}
    """
)


@pytest.fixture(scope="module")
def browser() -> Any:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def distinct_bytes(png: bytes) -> int:
    """How many distinct byte values the decoded pixel rows of a PNG hold (a blank page,
    one colour, holds very few)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data = 8, b""
    while pos < len(png):
        length = struct.unpack(">I", png[pos : pos + 4])[0]
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


def snap(page: Any, artifacts: Path, name: str) -> None:
    """Save a screenshot, check it is not blank, and run axe's serious and critical rules."""
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert distinct_bytes(path.read_bytes()) > 16, f"{name}: blank screenshot"
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
    )
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:200] for n in v["nodes"][:3]]}
        for v in json.loads(result)["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: axe violations {json.dumps(bad, indent=1)}"


def test_a_new_user_creates_deploys_follows_and_destroys(
    site: Live, browser: Any, artifacts: Path
) -> None:
    token = site.token("dev-dana")
    env = "dana-try"
    page = browser.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(site.url + "/")
        assert "/signin" in page.url
        snap(page, artifacts, "signin")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(site.url + "/")
        assert "dev-dana" in page.inner_text("header")
        snap(page, artifacts, "home")

        page.click("text=Create an environment")
        snap(page, artifacts, "new")
        page.fill("#name", env)
        page.select_option("#type", "lite")
        page.fill("#ttl", "2h")
        page.click("form.card button[type=submit]")
        page.wait_for_selector("#open-env")  # the live panel updates itself (htmx)
        assert "succeeded" in page.inner_text("#job-panel")
        snap(page, artifacts, "job-create")
        page.click("#open-env")
        snap(page, artifacts, "environment-empty")

        page.click("text=Deploy a Score file")
        page.fill("#score", WEB_APP)
        page.click("text=Show the plan")
        assert "Confirm and deploy" in page.content()
        snap(page, artifacts, "deploy-plan")
        page.click("text=Confirm and deploy")
        page.wait_for_selector("#open-env")
        panel = page.inner_text("#job-panel")
        assert "succeeded" in panel, panel
        snap(page, artifacts, "job-deploy")
        page.click("#open-env")
        link = page.wait_for_selector("a.endpoint")
        snap(page, artifacts, "environment")
        href = link.get_attribute("href")
        assert href and href.startswith("http://127.0.0.1:")
        link.click()
        page.wait_for_load_state()
        assert "hello from greeter" in page.inner_text("body")
        page.go_back()

        for name, path in (
            ("approvals", "/approvals"),
            ("catalog", "/catalog"),
            ("component", "/catalog/local-volume"),
            ("decisions", "/decisions"),
            ("cost", "/cost"),
        ):
            page.goto(site.url + path)
            snap(page, artifacts, name)

        page.goto(f"{site.url}/environments/{env}")
        page.click("text=Destroy…")
        snap(page, artifacts, "destroy")
        page.fill("#confirm", env)
        page.click("button.danger")
        page.wait_for_selector("#job-panel .status-succeeded")
        snap(page, artifacts, "job-destroy")
    finally:
        page.close()
    with site.client("dev-dana") as c:
        gone = c.get(f"/api/v1/environments/{env}")
        assert gone.status_code == 404, gone.text  # destroyed: no longer listed
