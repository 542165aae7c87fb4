"""The portal's OIDC sign-in (authorization code + PKCE) against a real provider on 127.0.0.1
(``_oidcprovider``): the flow through httpx, following each redirect by hand, and once in
Chromium through the real pages; the session's user and teams get what RBAC grants them; and
every refusal (the provider's error, a wrong state, a replayed code, a wrong PKCE verifier, a
nonce mismatch, an expired ID token, a wrong audience, a lost flow) is a page that says so,
with no session."""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _apisupport import ADMIN, Live, prepare, serving, teardown
from _oidcprovider import Provider

pytestmark = pytest.mark.integration

CLIENT_ID = "stackyard-portal"
CLIENT_SECRET = "prov-secret-" + secrets.token_hex(8)
#: The provider's group that the server maps to team ``platform``.
GROUP = "idp-platform"
OLGA = {"sub": "oidc-olga", "groups": [GROUP, "idp-other"], "preferred_username": "olga"}


def _oidc_settings(settings: Any, provider: Provider, secret: str | None) -> Any:
    return dataclasses.replace(
        settings,
        oidc_issuer=provider.url,
        oidc_audience=(),
        oidc_jwks=f"{provider.url}/jwks",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=secret,
        oidc_teams=((GROUP, "platform"),),
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with Provider(CLIENT_ID, CLIENT_SECRET) as p:
        yield p


@pytest.fixture(scope="module")
def oidc_site(
    provider: Provider, portal_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A server whose portal signs in with ``provider`` (a confidential client); team
    ``platform`` owns its environment."""
    import os

    from stackyard.api.context import ApiConfig
    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace

    env = f"o{secrets.token_hex(5)}"
    home = tmp_path_factory.mktemp("oidc-portal") / "home"
    saved = os.environ.pop("STACKYARD_DATABASE_URL", None)
    settings = _oidc_settings(prepare(home, portal_template, env), provider, CLIENT_SECRET)
    try:
        with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
            grants.grant(
                ws,
                grants.parse(
                    "environment-owner", user=None, team="platform", env=env, env_type=None
                ),
            )
        with serving(settings, worker=False, config=ApiConfig(auth_failures=10_000)) as (
            url,
            logs,
        ):
            provider.redirect_uris = [f"{url}/auth/callback"]
            yield Live(url, home, settings, env, logs)
    finally:
        teardown(settings)
        if saved is not None:
            os.environ["STACKYARD_DATABASE_URL"] = saved


@pytest.fixture(autouse=True)
def fresh(provider: Provider) -> None:
    """Each test signs in as Olga, with honest ID tokens, unless it says otherwise."""
    provider.user = dict(OLGA)
    provider.id_token = {}
    provider.deny = False
    provider.refusals.clear()


def _cookie(response: httpx.Response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert found, (name, response.headers.get_list("set-cookie"))
    return found[-1]


def _start(c: httpx.Client, target: str = "/") -> tuple[str, dict[str, str]]:
    """From the sign-in page to the provider: its authorize URL and query."""
    page = c.get("/signin", params={"next": target})
    assert page.status_code == 200
    found = re.search(r'href="(/auth/login\?next=[^"]*)"', page.text)
    assert found, page.text
    assert "Sign in with localhost:" in page.text
    go = c.get(found.group(1).replace("&amp;", "&"))
    assert go.status_code == 303, go.text
    flow = _cookie(go, "sy_oidc")
    assert "HttpOnly" in flow and "SameSite=lax" in flow and "Path=/auth" in flow
    url = go.headers["location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return url, query


def _authorize(url: str) -> str:
    """The provider approves at once: the callback URL it sends the browser to."""
    back = httpx.get(url, timeout=30)
    assert back.status_code == 302, back.text
    return str(back.headers["location"])


def _sign_in(c: httpx.Client, target: str = "/") -> httpx.Response:
    url, _ = _start(c, target)
    return c.get(_authorize(url))


def _refused(r: httpx.Response, status: int, says: str) -> None:
    assert r.status_code == status, r.text
    assert says in r.text, r.text
    assert 'href="/signin"' in r.text  # the way back
    assert not [h for h in r.headers.get_list("set-cookie") if h.startswith("sy_session=")]


def test_the_flow_signs_in_with_pkce_and_rbac_applies_to_the_groups(
    oidc_site: Live, provider: Provider
) -> None:
    env = oidc_site.env
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        url, query = _start(c, f"/environments/{env}")
        assert url.startswith(f"{provider.url}/authorize?")
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43  # base64url of a sha256, unpadded
        assert query["scope"].split() == ["openid", "profile", "email"]
        assert query["client_id"] == CLIENT_ID
        assert query["redirect_uri"] == f"{oidc_site.url}/auth/callback"
        assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
        done = c.get(_authorize(url))
        assert done.status_code == 200, done.text
        assert "oidc-olga" in done.text
        assert done.headers["refresh"] == f"0; url=/environments/{env}"
        session = _cookie(done, "sy_session")
        assert "HttpOnly" in session and "SameSite=strict" in session
        max_age = int(re.search(r"Max-Age=(\d+)", session).group(1))  # type: ignore[union-attr]
        assert 0 < max_age <= 300  # bounded by the ID token's exp
        assert "sy_oidc=" in done.headers["set-cookie"]  # the flow cookie is cleared
        assert provider.issued and not provider.refusals
        for part in provider.issued[-1].split("."):
            assert part not in done.text and part not in session

        # the team the group maps to owns the environment: its actions show
        page = c.get(f"/environments/{env}")
        assert page.status_code == 200, page.text
        assert "oidc-olga" in page.text and f"/environments/{env}/deploy" in page.text
        me = c.get("/api/v1/environments")  # the portal's session is not an API credential
        assert me.status_code == 401

        # signing out: the session cookie cleared, and a link to the provider's sign-out
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        out = c.post("/signout", data={"csrf": csrf})
        assert out.status_code == 200, out.text
        assert f'href="{provider.url}/logout?client_id={CLIENT_ID}"' in out.text
        assert 'sy_session=""' in out.headers["set-cookie"]
        assert c.get("/").status_code == 303

    # a user whose group is not mapped gets no team: the environment is not theirs to see
    provider.user = {"sub": "oidc-oscar", "groups": ["platform"]}
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        assert _sign_in(c).status_code == 200
        page = c.get(f"/environments/{env}")
        assert page.status_code == 403 and "oidc-oscar" in page.text
        assert f"/environments/{env}/deploy" not in page.text

    # nothing secret reached the server's log (the test's own requests are not the server's)
    ours = f"httpx INFO HTTP Request: GET {oidc_site.url}/"

    def server_logs() -> str:
        return "\n".join(line for line in oidc_site.logs.lines if not line.startswith(ours))

    # the access log line is written once the answer has gone out: it may trail the client
    deadline = time.monotonic() + 5
    while "/auth/callback?code=***&state=" not in server_logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    logs = server_logs()
    assert "/auth/callback?code=***&state=" in logs
    assert CLIENT_SECRET not in logs
    for code in provider.codes:
        assert code not in logs
    for token in provider.issued:
        assert token.split(".")[2] not in logs


def test_the_provider_error_is_shown(oidc_site: Live, provider: Provider) -> None:
    provider.deny = True
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        r = _sign_in(c)
    _refused(r, 401, "access_denied")
    assert "The user said no" in r.text


def test_a_wrong_state_is_refused_before_the_code_is_used(
    oidc_site: Live, provider: Provider
) -> None:
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        url, _ = _start(c)
        back = _authorize(url)
        forged = re.sub(r"state=[^&]+", "state=forged-state", back)
        _refused(c.get(forged), 400, "does not match")
        assert not provider.codes[parse_qs(urlsplit(back).query)["code"][0]].used
        # the user's own sign-in still completes
        assert c.get(back).status_code == 200


def test_a_replayed_code_is_refused_by_the_provider(oidc_site: Live, provider: Provider) -> None:
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        url, _ = _start(c)
        flow = c.cookies["sy_oidc"]
        back = _authorize(url)
        assert c.get(back).status_code == 200
    with httpx.Client(base_url=oidc_site.url, timeout=60) as replay:
        replay.cookies.set("sy_oidc", flow, domain="127.0.0.1", path="/auth")
        r = replay.get(back)
    _refused(r, 401, "refused the sign-in")
    assert provider.refusals == ["invalid_grant: unknown or used code"]


def test_a_code_for_another_verifier_is_refused_by_the_provider(
    oidc_site: Live, provider: Provider
) -> None:
    """Another browser's code, injected into this browser's sign-in (its state): the provider
    checks this sign-in's verifier against the other's S256 challenge and refuses."""
    with (
        httpx.Client(base_url=oidc_site.url, timeout=60) as victim,
        httpx.Client(base_url=oidc_site.url, timeout=60) as attacker,
    ):
        _, mine = _start(victim)
        theirs = _authorize(_start(attacker)[0])
        code = parse_qs(urlsplit(theirs).query)["code"][0]
        r = victim.get("/auth/callback", params={"code": code, "state": mine["state"]})
    _refused(r, 401, "refused the sign-in")
    assert provider.refusals == ["invalid_grant: PKCE verification failed"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "another-sign-in"}, "the nonce is another sign-in's"),
        ({"exp": -120, "iat": -420}, "the ID token expired two minutes ago"),
        ({"aud": "another-client"}, "the ID token was issued to another client"),
        ({"iss": "https://idp.invalid"}, "another issuer"),
    ],
    ids=["nonce", "expired", "audience", "issuer"],
)
def test_an_id_token_that_does_not_verify_is_refused(
    oidc_site: Live, provider: Provider, claims: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    provider.id_token = {k: now + v if k in ("exp", "iat") else v for k, v in claims.items()}
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        r = _sign_in(c)
        _refused(r, 401, "did not verify")
        assert c.get("/").status_code == 303, reason
    assert provider.issued and not provider.refusals


def test_a_callback_without_its_flow_is_refused(oidc_site: Live, provider: Provider) -> None:
    with httpx.Client(base_url=oidc_site.url, timeout=60) as c:
        url, _ = _start(c)
        back = _authorize(url)
    with httpx.Client(base_url=oidc_site.url, timeout=60) as other:
        _refused(other.get(back), 400, "expired")
        _refused(other.get("/auth/callback", params={"state": "x", "code": "y"}), 400, "expired")


def test_a_public_client_names_itself_without_a_secret(
    oidc_site: Live, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without a client secret the portal sends its client id in the body (no Basic auth):
    the provider of a public client accepts that, and only that."""
    with Provider(CLIENT_ID, None) as public:
        public.user = dict(OLGA)
        settings = _oidc_settings(oidc_site.settings, public, None)
        with (
            serving(settings, worker=False) as (url, _logs),
            httpx.Client(base_url=url, timeout=60) as c,
        ):
            public.redirect_uris = [f"{url}/auth/callback"]
            done = _sign_in(c)
            assert done.status_code == 200, done.text
            assert c.get(f"/environments/{oidc_site.env}").status_code == 200
        assert not public.refusals


def test_a_browser_signs_in_through_the_provider(
    oidc_site: Live, provider: Provider, browser: Any, artifacts: Path
) -> None:
    """Chromium: the portal (127.0.0.1) sends it to the provider (localhost, another site)
    and back; the Strict session cookie then comes with the next page."""
    from _browsing import snap

    env = oidc_site.env
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{oidc_site.url}/environments/{env}")
        assert "/signin" in page.url
        snap(page, artifacts, "oidc-signin")
        page.get_by_role("link", name=re.compile("Sign in with localhost")).click()
        page.wait_for_url(f"{oidc_site.url}/environments/{env}")
        assert page.locator(".who .user").inner_text() == "oidc-olga"
        assert page.get_by_role("link", name="Deploy a Score file").count() == 1
        snap(page, artifacts, "oidc-environment")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["sy_session"]["httpOnly"] and cookies["sy_session"]["sameSite"] == "Strict"
        assert "sy_oidc" not in cookies
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("link", name="Sign out of localhost").wait_for()
        assert "sy_session" not in {c["name"] for c in context.cookies()}
    finally:
        context.close()
