"""The portal in a real headless Chromium (Debian's, driven by Playwright): a new user signs
in, creates an ephemeral environment from the form, deploys a small web app from the page,
waits for it on the live events, follows its endpoint link and sees the app's answer, then
destroys the environment. Every page is saved as a screenshot (checked not blank) and run
through axe-core's serious and critical rules."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from _apisupport import ADMIN, Live
from _browsing import snap

pytestmark = pytest.mark.integration

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
    resources:
      data:
        type: volume
    """
)


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
            ("releases", "/releases"),
        ):
            page.goto(site.url + path)
            snap(page, artifacts, name)
            if name == "cost":  # the charts are pictures drawn on the server
                assert page.locator("svg").count() >= 3
            if name == "catalog":  # adoption: the app's volume runs a local-volume build
                rows = page.inner_text("table.adoption")
                assert "local-volume" in rows and f"{env}/greeter" in rows, rows

        page.goto(f"{site.url}/environments/{env}")
        page.click("text=Destroy…")
        snap(page, artifacts, "destroy")
        page.fill("#confirm", env)
        page.click("button.danger")
        page.wait_for_selector("#job-panel .status-succeeded")
        snap(page, artifacts, "job-destroy")
    finally:
        page.close()
    # the audit log needs an auditor's role: the admin reads it (and the cost) in the browser
    admin = browser.new_context().new_page()
    try:
        admin.goto(site.url + "/signin")
        admin.fill("#token", site.token(ADMIN))
        admin.click("button[type=submit]")
        admin.wait_for_url(site.url + "/")
        admin.goto(site.url + "/audit")
        snap(admin, artifacts, "audit")
        assert "verified" in admin.inner_text("p.verify")
        assert "dev-dana" in admin.inner_text("table")  # what she just did is there
        admin.goto(site.url + "/cost")
        snap(admin, artifacts, "cost-admin")
        assert admin.locator("svg").count() >= 3
    finally:
        admin.context.close()
    with site.client("dev-dana") as c:
        gone = c.get(f"/api/v1/environments/{env}")
        assert gone.status_code == 404, gone.text  # destroyed: no longer listed
