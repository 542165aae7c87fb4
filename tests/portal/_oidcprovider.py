"""Test-only: an OIDC provider on 127.0.0.1 for the portal's sign-in (a unique module name:
every test folder has its own helpers).

It serves discovery, the JWKS of the identity tests' ``Issuer`` keys, an authorize endpoint
that approves the configured user at once and redirects back with a code, a token endpoint
that checks the code (once only), the redirect URI, the client's authentication and the PKCE
verifier against the S256 challenge before it issues an RS256 ID token with the nonce, and an
end-session endpoint. What it refused is kept in ``refusals``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).parent.parent / "identity"))

from _oidc_issuer import Issuer

#: RFC 7636 §4.1: 43 to 128 unreserved characters.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


@dataclass
class Grant:
    """A code the authorize endpoint gave out, and what it was given for."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    user: dict[str, Any]
    used: bool = False


@dataclass
class Provider:
    """The provider; ``host`` names it in its URLs (``localhost`` makes it another site than
    a portal on 127.0.0.1). ``user`` is the claims of whoever signs in next; ``id_token``
    overrides claims of the next ID tokens (``exp``, ``aud``, ``nonce``, ...)."""

    client_id: str
    client_secret: str | None
    host: str = "localhost"
    redirect_uris: list[str] = field(default_factory=list)
    user: dict[str, Any] = field(default_factory=dict)
    id_token: dict[str, Any] = field(default_factory=dict)
    deny: bool = False
    codes: dict[str, Grant] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        port = self._server.server_address[1]
        self.url = f"http://{self.host}:{port}"
        self.issuer = Issuer.make(self.url, audience=self.client_id)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._mutex = threading.Lock()

    def __enter__(self) -> Provider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- endpoints ---------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "end_session_endpoint": f"{self.url}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, headers, JSON body): a redirect back with a code, or a refusal."""
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return self._refuse(400, "invalid_request", "unknown client or redirect_uri")
        state = query.get("state", "")
        if self.deny:
            return self._back(
                redirect_uri,
                {"error": "access_denied", "error_description": "The user said no", "state": state},
            )
        if (
            query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or "openid" not in query.get("scope", "").split()
            or not state
            or not query.get("nonce")
        ):
            return self._back(
                redirect_uri, {"error": "invalid_request", "state": state}, refusal="authorize"
            )
        code = secrets.token_urlsafe(24)
        with self._mutex:
            self.codes[code] = Grant(
                self.client_id,
                redirect_uri,
                query["code_challenge"],
                query["nonce"],
                dict(self.user),
            )
        return self._back(redirect_uri, {"code": code, "state": state})

    def token(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not self._client_ok(form, authorization):
            return self._refuse(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "authorization_code":
            return self._refuse(400, "unsupported_grant_type", "")
        with self._mutex:
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant.used:
                return self._refuse(400, "invalid_grant", "unknown or used code")
            grant.used = True  # one use, whatever happens next (RFC 6749 §4.1.2)
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._refuse(400, "invalid_grant", "redirect_uri differs")
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not VERIFIER.fullmatch(verifier) or not hmac.compare_digest(computed, grant.challenge):
            return self._refuse(400, "invalid_grant", "PKCE verification failed")
        claims = {"nonce": grant.nonce, "aud": self.client_id, **grant.user, **self.id_token}
        id_token = self.issuer.token(**claims)
        self.issued.append(id_token)
        return (
            200,
            {"Cache-Control": "no-store"},
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            },
        )

    def _client_ok(self, form: dict[str, str], authorization: str | None) -> bool:
        if self.client_secret is None:  # a public client names itself
            return form.get("client_id") == self.client_id and not authorization
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(value, validate=True).decode()
        except ValueError:
            return False
        name, _, secret = pair.partition(":")
        return unquote_plus(name) == self.client_id and hmac.compare_digest(
            unquote_plus(secret), self.client_secret
        )

    def _refuse(
        self, status: int, error: str, why: str
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.refusals.append(f"{error}: {why}")
        return status, {}, {"error": error}

    def _back(
        self, redirect_uri: str, params: dict[str, str], *, refusal: str | None = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if refusal:
            self.refusals.append(refusal)
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return 302, {"Location": f"{redirect_uri}{sep}{urlencode(params)}"}, {}


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self._send(200, {}, provider.discovery())
            elif parts.path == "/jwks":
                self._send(200, {}, provider.issuer.jwks())
            elif parts.path == "/authorize":
                self._send(*provider.authorize(query))
            elif parts.path == "/logout":
                self._send(200, {}, {"signed_out": True})
            else:
                self._send(404, {}, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            if urlsplit(self.path).path == "/token":
                self._send(*provider.token(form, self.headers.get("Authorization")))
            else:
                self._send(404, {}, {"error": "not_found"})

        def _send(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
