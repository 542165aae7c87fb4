"""Every portal page through a real server with httpx: it renders (200), escapes what it
shows, never shows a secret unless revealed, refuses a forged POST (403), hides actions from a
viewer and the server refuses them anyway."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import httpx
import pytest
from _apisupport import ADMIN, Live, sleeper

from stackyard.portal import STATIC

pytestmark = pytest.mark.integration


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


#: The vendored htmx (htmx.org 2.0.11 from the npm registry, dist/htmx.min.js).
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def pages(env: str) -> list[str]:
    return [
        "/",
        f"/environments/{env}",
        f"/environments/{env}/deploy",
        f"/environments/{env}/destroy",
        "/new",
        "/approvals",
        "/catalog",
        "/catalog/local-volume",
        "/decisions",
        "/audit",
        "/cost",
    ]


def test_htmx_is_the_pinned_build_with_its_licence() -> None:
    data = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert (
        "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()
        or "BSD" in (STATIC / "htmx.LICENSE").read_text()
    )


def test_every_page_renders_with_the_security_headers(site: Live) -> None:
    with site.client(ADMIN) as c:
        for path in pages(site.env):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:2000])
            assert r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp
            assert "<script>" not in r.text  # no inline script anywhere
            assert "style=" not in r.text  # nor an inline style (the CSP forbids them)
        svg = c.get(f"/environments/{site.env}/graph.svg")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg")
        assert c.get("/static/htmx.min.js").status_code == 200


def test_without_credentials_a_page_sends_you_to_sign_in(site: Live) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as c:
        r = c.get(f"/environments/{site.env}")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/signin?next=")
        bad = c.get("/", headers={"Authorization": "Bearer sy_000000000000_nope"})
        assert bad.status_code == 303


def test_sign_in_sets_a_sealed_httponly_strict_cookie(site: Live) -> None:
    token = site.token("dev-dana")
    with httpx.Client(base_url=site.url, timeout=30) as c:
        form = c.get("/signin")
        assert form.status_code == 200
        # without the form's double-submit token: refused
        forged = c.post("/signin", data={"token": token, "csrf": "x"})
        assert forged.status_code == 403
        r = c.post("/signin", data={"token": token, "csrf": csrf_of(form.text), "next": "/"})
        assert r.status_code == 303, r.text
        cookie = r.headers["set-cookie"]
        assert "sy_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        # the token's secret part (``sy_<id>_<secret>``; the secret may itself hold "_")
        secret = token.split("_", 2)[2]
        assert len(secret) >= 20 and token not in cookie and secret not in cookie
        home = c.get("/")
        assert home.status_code == 200 and "dev-dana" in home.text
        # a wrong token: the form again, with the API's one message
        again = c.get("/signin")
        wrong = c.post(
            "/signin", data={"token": "sy_000000000000_bad", "csrf": csrf_of(again.text)}
        )
        assert wrong.status_code == 401 and "Sign in" in wrong.text


def test_a_forged_post_is_refused_before_anything_runs(site: Live) -> None:
    with site.client("dev-dana") as c:
        c.get("/")  # a real page first
        for path, data in (
            ("/new", {"name": "forged-env", "type": "lite"}),
            (f"/environments/{site.env}/extend", {"ttl": "1h"}),
            (f"/environments/{site.env}/destroy", {"confirm": site.env}),
            (f"/environments/{site.env}/reveal", {}),
        ):
            for csrf in (None, "0" * 64):
                body = dict(data, **({"csrf": csrf} if csrf else {}))
                r = c.post(path, data=body)
                assert r.status_code == 403, (path, r.status_code, r.text[:500])
        envs = c.get("/api/v1/environments").json()["items"]
        assert "forged-env" not in [e["name"] for e in envs]
        assert site.env in [e["name"] for e in envs if e["status"] != "destroyed"]


def test_a_viewer_sees_no_action_and_the_server_refuses_one(site: Live) -> None:
    with site.client("view-vic") as c:
        page = c.get(f"/environments/{site.env}")
        assert page.status_code == 200
        for action in ("/deploy", "/destroy", "/extend", "/reveal", "Create an environment"):
            assert action not in page.text, action
        assert "/new" not in c.get("/").text
        # the forms the viewer never saw: refused by the service layer (403), CSRF or not
        token = csrf_of(page.text)
        r = c.post(f"/environments/{site.env}/destroy", data={"csrf": token, "confirm": site.env})
        assert r.status_code == 403 and "may not" in r.text
        r = c.post(f"/environments/{site.env}/reveal", data={"csrf": token})
        assert r.status_code == 403
        r = c.post("/new", data={"csrf": token, "name": "vic-env", "type": "lite"})
        assert r.status_code == 403


@pytest.mark.parametrize(
    "hostile",
    ["<script>alert('x')</script>", '"><img src=x onerror=alert(1)>', "a&amp;b</textarea><b>"],
    ids=["script", "attribute-break", "textarea-break"],
)
def test_hostile_text_renders_as_text(site: Live, hostile: str) -> None:
    """A workload named with a hostile string: the refusal quotes it, as text; the pasted
    file comes back in the form, as text."""
    score = sleeper("x").replace("metadata: {name: x}", "metadata: {name: " + repr(hostile) + "}")
    with site.client(ADMIN) as c:
        token = csrf_of(c.get(f"/environments/{site.env}/deploy").text)
        r = c.post(f"/environments/{site.env}/deploy/plan", data={"csrf": token, "score": score})
    assert r.status_code in (400, 422), r.text[:1000]
    assert hostile not in r.text
    assert "<img" not in r.text and "<script>" not in r.text and "</textarea><b>" not in r.text
    escaped = hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped.replace('"', "&#34;").replace("'", "&#39;") in r.text


def test_a_deploy_from_the_form_shows_the_plan_then_runs_as_a_job(site: Live) -> None:
    score = sleeper("sleepy")
    with site.client(ADMIN) as c:
        form = c.get(f"/environments/{site.env}/deploy")
        token = csrf_of(form.text)
        plan = c.post(
            f"/environments/{site.env}/deploy/plan",
            data={"csrf": token, "score": score},
        )
        assert plan.status_code == 200, plan.text[:2000]
        assert "Confirm and deploy" in plan.text and "create" in plan.text
        # nothing applied yet
        assert "sleepy" not in c.get(f"/api/v1/environments/{site.env}").json()["workloads"]
        go = c.post(f"/environments/{site.env}/deploy", data={"csrf": token, "score": score})
        assert go.status_code == 303
        job_url = go.headers["location"]
        assert job_url.startswith("/jobs/")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            panel = c.get(job_url + "/panel")
            assert panel.status_code == 200
            if "hx-trigger" not in panel.text:
                break
            time.sleep(0.3)
        assert "succeeded" in panel.text, panel.text
        env_page = c.get(f"/environments/{site.env}")
        assert re.search(r'class="name">sleepy<', env_page.text)
        assert "health-ok" in env_page.text or "health-" in env_page.text
        # a secret never reaches a page unless revealed
        assert "(secret)" not in env_page.text or 'class="masked"' in env_page.text


def test_screens_are_not_blank_html(site: Live, tmp_path: Path) -> None:
    with site.client(ADMIN) as c:
        for path in pages(site.env):
            text = c.get(path).text
            assert "<h1>" in text and len(text) > 500, path
