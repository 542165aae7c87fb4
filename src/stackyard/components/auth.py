"""Authentication to OCI registries: HTTP basic, and bearer tokens from a challenge.

The registry names its scheme in ``WWW-Authenticate`` on a 401. For ``Basic`` we answer with
the username and password; for ``Bearer realm=...,service=...,scope=...`` we fetch a token
from the realm (with the username and password, if any) and retry. Credentials and tokens are
never part of an error message.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

from stackyard.components.oci import RegistryAuthError

__all__ = ["AUTH_HINT", "RegistryAuth"]

AUTH_HINT = (
    "Set STACKYARD_REGISTRY_USERNAME and STACKYARD_REGISTRY_PASSWORD, or "
    "STACKYARD_REGISTRY_TOKEN, to credentials with access to this repository."
)


class RegistryAuth(httpx.Auth):
    """Basic auth, or bearer tokens fetched when a ``Bearer`` challenge asks for them.

    A username and password are sent only once the registry asks (a 401), so a registry that
    needs none never sees them. A given token (``STACKYARD_REGISTRY_TOKEN``) is sent as a
    bearer token on every request. Fetched tokens are remembered per repository; a token
    that no longer suffices (expired, or pull-only for a push) is answered with a new dance.
    """

    # The registry's answers are read by the caller, within a bound (``remote``): httpx
    # reading every body here would take a hostile answer whole before any bound applied.
    # Only the token answer is read here (httpx reads it whole after the flow anyway).
    requires_response_body = False

    def __init__(self, username: str | None, password: str | None, token: str | None) -> None:
        self._basic = httpx.BasicAuth(username, password or "") if username is not None else None
        self._static = token
        self._tokens: dict[str, str] = {}
        self._scheme: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request``, answering a basic or bearer challenge once."""
        repo = _repository_of(request.url.path)
        if self._static is not None:
            request.headers["Authorization"] = f"Bearer {self._static}"
        elif repo in self._tokens:
            request.headers["Authorization"] = f"Bearer {self._tokens[repo]}"
        elif self._scheme == "basic" and self._basic is not None:
            request = next(self._basic.auth_flow(request))
        response = yield request
        if response.status_code != 401 or self._static is not None:
            return
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic" and self._basic is not None:
            self._scheme = "basic"
            yield next(self._basic.auth_flow(request))
        elif scheme == "bearer" and "realm" in params:
            query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
            token_request = httpx.Request("GET", params["realm"], params=query)
            if self._basic is not None:
                token_request = next(self._basic.auth_flow(token_request))
            token_response = yield token_request
            token = _token_of(token_response, token_response.read())
            if token is None:
                realm = urlsplit(params["realm"]).netloc
                raise RegistryAuthError(
                    f"The token service at {realm} refused to issue a token "
                    f"(HTTP {token_response.status_code})",
                    registry=request.url.netloc.decode(),
                    hint=AUTH_HINT,
                )
            self._tokens[repo] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def _repository_of(path: str) -> str:
    """The repository a ``/v2/`` path addresses ('' for the catalog), for token caching."""
    match = re.match(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/", path)
    return match[1] if match else ""


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _token_of(response: httpx.Response, body: bytes) -> str | None:
    if response.status_code != 200:
        return None
    with contextlib.suppress(ValueError, AttributeError, RecursionError):
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        return token if isinstance(token, str) and token else None
    return None
