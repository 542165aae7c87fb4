"""The portal's OIDC sign-in: the authorization-code flow with PKCE (S256) against the issuer
the API trusts, ending in the same sealed session cookie as the token form.

``/auth/login`` makes a fresh ``state``, ``nonce`` and PKCE ``code_verifier``, seals them in
the short-lived ``sy_oidc`` cookie (``SameSite=Lax``: the issuer sends the browser back from
another site, and a Strict cookie would not come with it) and sends the browser to the
issuer's authorization endpoint (found by discovery, cached). ``/auth/callback`` checks the
state against that cookie, exchanges the code at the token endpoint (with the verifier;
``client_secret_basic`` for a confidential client), checks the ID token with the verifier the
API uses (``OidcVerifier.verify_id_token``: signature, ``iss``, ``aud`` = the client id,
``exp``, ``nonce``) and seals it in the session cookie, which ends when it expires. Each
request of the session re-checks it as the API checks a bearer token, so the user and the
teams are those the API would see.

Nothing secret (code, verifier, tokens, client secret) is logged or shown on a page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from stackyard.errors import InvalidInputError
from stackyard.identity.errors import NotAuthenticated
from stackyard.identity.oidc import OidcConfig, OidcVerifier
from stackyard.portal.session import COOKIE, SESSION_S
from stackyard.portal.web import portal, redirect, safe_next

if TYPE_CHECKING:
    from stackyard.identity.oidc import OidcClaims
    from stackyard.settings import Settings

__all__ = ["OidcSignIn", "router"]

log = logging.getLogger("stackyard.portal")
router = APIRouter(include_in_schema=False)

#: The cookie holding a sign-in in progress, its sealing purpose and its lifetime (seconds).
FLOW_COOKIE = "sy_oidc"
FLOW_PURPOSE = "oidc-signin"
FLOW_S = 600
CALLBACK = "/auth/callback"
BASE_SCOPES = ("openid", "profile", "email")
#: Discovery is read again after this long (seconds); a failed read is retried at most this
#: often when nothing was read before.
DISCOVERY_TTL_S = 3600.0
DISCOVERY_RETRY_S = 30.0
TIMEOUT_S = 10.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
#: An OAuth error code as shown (RFC 6749 §4.1.2.1 limits it to printable ASCII).
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class SignInFailed(NotAuthenticated):
    """A sign-in that cannot go on: its page says why (``status``: 400, 401 or 502,
    ``title``, ``detail``)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title, hint=detail)
        self.status = status
        self.title = title
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The portal as an OIDC client of the issuer."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_url: str | None = None
    scopes: tuple[str, ...] = BASE_SCOPES

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientConfig | None:
        """The client of ``settings`` (None unless an issuer and a client id are set)."""
        if not settings.oidc_issuer or not settings.oidc_client_id:
            return None
        redirect_url = settings.oidc_redirect_url
        if redirect_url is not None:
            _check_url(redirect_url, "STACKYARD_OIDC_REDIRECT_URL")
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            redirect_url=redirect_url,
            scopes=tuple(dict.fromkeys((*BASE_SCOPES, *settings.oidc_scopes))),
        )


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What discovery says of the issuer."""

    authorization: str
    token: str
    end_session: str | None


class OidcSignIn:
    """The sign-in of one server (``app.state.oidc_signin``); thread-safe. Close it when done."""

    def __init__(self, client: ClientConfig, verifier: OidcVerifier) -> None:
        self.client = client
        self.verifier = verifier
        self._mutex = threading.Lock()
        self._endpoints: Endpoints | None = None
        self._read_at = -DISCOVERY_TTL_S
        self._failed_at = -DISCOVERY_RETRY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcSignIn | None:
        """The sign-in ``settings`` configure (None: the portal offers the token form only)."""
        client = ClientConfig.from_settings(settings)
        config = OidcConfig.from_settings(settings)
        if client is None or config is None:
            return None
        return cls(client, OidcVerifier(config))

    @property
    def label(self) -> str:
        """The issuer as the sign-in button names it."""
        parts = urlsplit(self.client.issuer)
        return (parts.netloc + parts.path).rstrip("/") or self.client.issuer

    def close(self) -> None:
        """Close the verifier's HTTP client."""
        self.verifier.close()

    # -- discovery ---------------------------------------------------------------------------

    def endpoints(self) -> Endpoints:
        """The issuer's endpoints, from ``<issuer>/.well-known/openid-configuration`` (cached;
        the last good answer is kept when a new read fails)."""
        with self._mutex:
            now = time.monotonic()
            due = self._endpoints is None or now - self._read_at >= DISCOVERY_TTL_S
            if due and (self._endpoints is not None or now - self._failed_at >= DISCOVERY_RETRY_S):
                try:
                    self._endpoints = self._discover()
                    self._read_at = now
                except ValueError as exc:
                    self._failed_at = now
                    log.warning("OIDC discovery failed: %s", exc)
            if self._endpoints is None:
                raise SignInFailed(
                    502,
                    "The identity provider cannot be reached",
                    f"Its configuration could not be read from {self.client.issuer}. Try "
                    "again later, or sign in with an API token; the server log says why.",
                )
            return self._endpoints

    def _discover(self) -> Endpoints:
        import httpx

        url = self.client.issuer.rstrip("/") + "/.well-known/openid-configuration"
        _check_url(url, "STACKYARD_OIDC_ISSUER")
        try:
            with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as http:
                response = http.get(url, headers={"Accept": "application/json"})
            doc = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise ValueError(f"cannot read {url}: {type(exc).__name__}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{url} answered HTTP {response.status_code} without a JSON object")
        if doc.get("issuer") != self.client.issuer:
            raise ValueError(f"{url} names another issuer than STACKYARD_OIDC_ISSUER")
        found: dict[str, str | None] = {}
        for key in ("authorization_endpoint", "token_endpoint", "end_session_endpoint"):
            value = doc.get(key)
            if value is None and key == "end_session_endpoint":
                found[key] = None
                continue
            if not isinstance(value, str):
                raise ValueError(f"{url} has no {key}")
            _check_url(value, key)
            found[key] = value
        auth, token = found["authorization_endpoint"], found["token_endpoint"]
        assert auth is not None and token is not None
        return Endpoints(auth, token, found["end_session_endpoint"])

    # -- the flow ----------------------------------------------------------------------------

    def start(self, redirect_uri: str, target: str) -> tuple[str, dict[str, str]]:
        """Where to send the browser, and the flow to seal in its cookie."""
        endpoints = self.endpoints()
        flow = {
            "state": secrets.token_urlsafe(32),
            "nonce": secrets.token_urlsafe(32),
            "verifier": secrets.token_urlsafe(64),  # 86 unreserved characters (RFC 7636)
            "redirect_uri": redirect_uri,
            "next": target,
        }
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.client.scopes),
                "state": flow["state"],
                "nonce": flow["nonce"],
                "code_challenge": challenge(flow["verifier"]),
                "code_challenge_method": "S256",
            }
        )
        sep = "&" if urlsplit(endpoints.authorization).query else "?"
        return f"{endpoints.authorization}{sep}{query}", flow

    def finish(self, flow: dict[str, str], code: str) -> tuple[OidcClaims, str]:
        """Exchange ``code`` and check the ID token: its claims and the token itself."""
        endpoints = self.endpoints()
        id_token = self._exchange(endpoints.token, flow, code)
        claims = self.verifier.verify_id_token(
            id_token, client_id=self.client.client_id, nonce=flow["nonce"]
        )
        if claims is None or claims.expires is None or claims.expires <= time.time():
            log.info("OIDC sign-in refused: the ID token did not verify")
            raise SignInFailed(
                401,
                "The sign-in did not verify",
                "The identity provider's answer (its ID token) is not valid for this server: "
                "wrong signature, issuer, audience or nonce, or expired. Sign in again; if it "
                "keeps failing, ask an admin to check the OIDC settings.",
            )
        return claims, id_token

    def _exchange(self, url: str, flow: dict[str, str], code: str) -> str:
        import httpx

        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow["redirect_uri"],
            "code_verifier": flow["verifier"],
        }
        headers = {"Accept": "application/json"}
        if self.client.client_secret:  # client_secret_basic (RFC 6749 §2.3.1: form-encoded)
            pair = f"{_form(self.client.client_id)}:{_form(self.client.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            data["client_id"] = self.client.client_id
        try:
            with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as http:
                response = http.post(url, data=data, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("OIDC token exchange failed: %s", type(exc).__name__)
            raise SignInFailed(
                502,
                "The identity provider cannot be reached",
                "Its token endpoint did not answer. Try again later.",
            ) from None
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if response.status_code == 200 and isinstance(id_token, str) and id_token:
            return id_token
        error = oauth_code(body.get("error") if isinstance(body, dict) else None)
        log.warning("OIDC token exchange refused: HTTP %s %s", response.status_code, error or "-")
        raise SignInFailed(
            401,
            "The identity provider refused the sign-in",
            "It did not accept the sign-in code"
            + (f" ({error})" if error else "")
            + ": the code may have been used already or the sign-in took too long. Sign in "
            "again.",
        )


def challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def oauth_code(value: object) -> str:
    """An OAuth error code fit to show (empty when it is not one)."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else ""


def _form(value: str) -> str:
    return quote(value, safe="").replace("%20", "+")


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if (parts.scheme == "https" and parts.hostname) or (
        parts.scheme == "http" and parts.hostname in _LOOPBACK
    ):
        return
    raise InvalidInputError(
        f"{what} {url!r} is not an https:// URL",
        hint="The sign-in's codes and tokens travel over it: use https:// (http:// is "
        "accepted for 127.0.0.1 and localhost only).",
    )


# -- pages -------------------------------------------------------------------------------------


def signin_of(request: Request) -> OidcSignIn | None:
    """The OIDC sign-in of the app serving ``request`` (None: not configured)."""
    found = getattr(request.app.state, "oidc_signin", None)
    return found if isinstance(found, OidcSignIn) else None


def offer(request: Request, target: str) -> dict[str, str] | None:
    """What the sign-in page shows of OIDC: the button's label and link (None: nothing)."""
    signin = signin_of(request)
    if signin is None:
        return None
    return {"label": signin.label, "url": f"/auth/login?next={quote(target, safe='')}"}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _page(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    error: bool = True,
    link: tuple[str, str] = ("/signin", "Back to sign in"),
    extra: tuple[str, str] | None = None,
) -> HTMLResponse:
    return portal(request).render(
        request,
        "oidc.html",
        None,
        code=status,
        title=title,
        detail=detail,
        error=error,
        link=link,
        extra=extra,
    )


def _failed(request: Request, exc: SignInFailed, *, keep_flow: bool = False) -> Response:
    response = _page(request, exc.status, exc.title, exc.detail)
    if not keep_flow:
        response.delete_cookie(FLOW_COOKIE, path="/auth")
    return response


@router.get("/auth/login")
async def login(request: Request, next: str | None = None) -> Response:
    """Start the sign-in: the flow sealed in its cookie, and off to the issuer."""
    signin = signin_of(request)
    if signin is None:
        return _page(
            request,
            404,
            "OIDC sign-in is not configured",
            "This server has no OIDC client id: sign in with an API token.",
        )
    client = signin.client
    redirect_uri = client.redirect_url or str(request.base_url).rstrip("/") + CALLBACK
    try:
        url, flow = await run_in_threadpool(signin.start, redirect_uri, safe_next(next))
    except SignInFailed as exc:
        return _failed(request, exc)
    response = redirect(url)
    response.set_cookie(
        FLOW_COOKIE,
        portal(request).sealer.seal_data(FLOW_PURPOSE, flow),
        max_age=FLOW_S,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/auth",
    )
    return response


@router.get(CALLBACK)
async def callback(request: Request) -> Response:
    """Finish the sign-in: check the state, exchange the code, check the ID token, and the
    session cookie."""
    signin = signin_of(request)
    p = portal(request)
    params = request.query_params
    sealed = request.cookies.get(FLOW_COOKIE)
    flow = p.sealer.open_data(FLOW_PURPOSE, sealed, ttl=FLOW_S) if sealed else None
    if signin is None or flow is None:
        return _failed(
            request,
            SignInFailed(
                400,
                "The sign-in expired",
                "This sign-in was not started in this browser, or took longer than "
                f"{FLOW_S // 60} minutes. Sign in again.",
            ),
        )
    state = params.get("state") or ""
    if not secrets.compare_digest(state.encode(), flow["state"].encode()):
        log.info("OIDC sign-in refused: the state does not match")
        return _failed(
            request,
            SignInFailed(
                400,
                "The sign-in does not match",
                "The answer from the identity provider belongs to another sign-in (its state "
                "differs). Sign in again.",
            ),
            keep_flow=True,  # a forged callback must not end the user's own sign-in
        )
    if params.get("error"):
        error = oauth_code(params.get("error"))
        reason = (params.get("error_description") or "")[:300]
        return _failed(
            request,
            SignInFailed(
                401,
                "The identity provider refused the sign-in",
                f"It answered {error or 'an error'}"
                + (f": {reason}" if reason else ".")
                + " Sign in again, or ask an admin.",
            ),
        )
    code = params.get("code")
    if not code:
        return _failed(
            request,
            SignInFailed(400, "The sign-in is incomplete", "No code came back. Sign in again."),
        )
    try:
        claims, id_token = await run_in_threadpool(signin.finish, flow, code)
    except SignInFailed as exc:
        return _failed(request, exc)
    now = time.time()
    assert claims.expires is not None
    target = safe_next(flow.get("next"))
    # A page that moves on by itself, not a redirect: the browser came from the issuer's site,
    # and a browser that counts a redirect chain's first site would not send the new
    # SameSite=Strict session cookie with the next request.
    response = _page(
        request,
        200,
        "Signed in",
        f"You are signed in as {claims.user}.",
        error=False,
        link=(target, "Continue"),
    )
    response.headers["Refresh"] = f"0; url={target}"
    response.set_cookie(
        COOKIE,
        p.sealer.seal(id_token, now=now, expires=claims.expires, oidc=True),
        max_age=max(1, int(min(SESSION_S, claims.expires - now))),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(FLOW_COOKIE, path="/auth")
    return response


async def signed_out(request: Request) -> Response | None:
    """After signing out of an OIDC session: a page linking to the issuer's sign-out (None:
    not an OIDC session, or the issuer has no ``end_session_endpoint``)."""
    signin = signin_of(request)
    sealed = request.cookies.get(COOKIE)
    session = portal(request).sealer.open(sealed) if sealed else None
    if signin is None or session is None or not session.oidc:
        return None
    try:
        endpoints = await run_in_threadpool(signin.endpoints)
    except SignInFailed:
        return None
    if endpoints.end_session is None:
        return None
    sep = "&" if urlsplit(endpoints.end_session).query else "?"
    # client_id, never id_token_hint: the ID token stays off every page.
    url = f"{endpoints.end_session}{sep}{urlencode({'client_id': signin.client.client_id})}"
    response = _page(
        request,
        200,
        "Signed out",
        "You are signed out of stackyard. You may still be signed in at the identity provider.",
        error=False,
        link=("/signin", "Sign in again"),
        extra=(url, f"Sign out of {signin.label} too"),
    )
    return response
