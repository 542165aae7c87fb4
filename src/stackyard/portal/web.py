"""What every portal page shares: who is calling (session cookie or bearer token), the CSRF
check, rendering a template with the portal's security headers, and turning a refusal of the
service layer into a page."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from stackyard.api.context import Yard
from stackyard.errors import PermissionDeniedError, StackyardError
from stackyard.identity.errors import NotAuthenticated
from stackyard.portal.session import COOKIE, Sealer, bearer_binding

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import Identity

log = logging.getLogger("stackyard.portal")
T = TypeVar("T")

#: The portal's pages: scripts and styles from the server only, never inline; no framing.
PORTAL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": PORTAL_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class SignInNeeded(NotAuthenticated):
    """No valid credential came with the request (the portal answers with its sign-in page)."""


class Forbidden(PermissionDeniedError):
    """A form came without its CSRF token (or with a wrong one)."""

    def __init__(self) -> None:
        super().__init__("The form's CSRF token is missing or wrong", action="csrf")


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request and the CSRF token its forms carry."""

    who: Identity
    csrf: str
    binding: str
    cookie: bool


def _when(value: Any) -> str:
    if value in (None, ""):
        return "-"
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value).replace("T", " ")[:19] + " UTC" if "T" in str(value) else str(value)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("stackyard.portal", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["q"] = lambda v: quote(str(v), safe="")
    return env


class Portal:
    """The portal's shared parts (``app.state.portal``): templates and the session sealer."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard
        self.templates = _templates()
        self._sealer: Sealer | None = None

    @property
    def sealer(self) -> Sealer:
        """The session sealer of the server's home (its key read or made on first use)."""
        if self._sealer is None:
            self._sealer = Sealer.for_home(self.yard.settings.home)
        return self._sealer

    # -- who is calling ----------------------------------------------------------------------

    async def caller(self, request: Request) -> Caller:
        """The caller, from the ``Authorization`` header or the session cookie."""
        header = request.headers.get("authorization")
        token: str | None = None
        binding = ""
        cookie = False
        if header:
            token = header.partition(" ")[2].strip()
            binding = bearer_binding(token)
        elif request.cookies.get(COOKIE):
            session = await run_in_threadpool(self.sealer.open, request.cookies[COOKIE])
            if session is None:
                raise SignInNeeded
            token, binding, cookie = session.token, "session:" + session.sid, True
        if not token:
            raise SignInNeeded
        client = request.client.host if request.client else ""
        who = await self.yard.bounded(
            lambda: self.yard.authenticator.authenticate(f"Bearer {token}", client=client)
        )
        return Caller(who, self.sealer.csrf(binding), binding, cookie)

    async def form(self, request: Request, caller: Caller) -> Mapping[str, Any]:
        """The posted form, once its CSRF token was checked (``Forbidden`` otherwise): text
        fields as ``str``, an uploaded file as ``Upload``."""
        return await read_form(request, self.sealer, caller.binding)

    async def call(self, caller: Caller, fn: Callable[[Workspace], T]) -> T:
        """``fn(workspace)`` as the caller: the service layer checks access and audits."""
        return await self.yard.call(caller.who, fn)

    async def read(self, caller: Caller, fn: Callable[[Workspace], T]) -> T:
        """``fn(workspace)`` as ``call``, its reads sharing one read transaction (one
        connection and one consistent snapshot for the page, ``store.read_session``)."""

        def once(ws: Workspace) -> T:
            with ws.store.read_session():
                return fn(ws)

        return await self.yard.call(caller.who, once)

    # -- answers -----------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        caller: Caller | None,
        code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """The page ``name`` with ``context``, escaped, with the portal's headers."""
        template = self.templates.get_template(name)
        html = template.render(
            me=caller.who.user if caller else None,
            csrf=caller.csrf if caller else "",
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=code, headers=HEADERS)

    async def guarded(
        self,
        request: Request,
        handler: Callable[[Caller], Awaitable[Response]],
        *,
        page: bool = True,
    ) -> Response:
        """``handler(caller)``, with a sign-in redirect, a 403 for a forged form and the
        service layer's refusals shown as an error page with the API's status."""
        caller: Caller | None = None
        try:
            caller = await self.caller(request)
            return await handler(caller)
        except SignInNeeded:
            return self._signin_needed(request, page)
        except Forbidden:
            return self.render(
                request,
                "error.html",
                caller,
                code=403,
                title="Forbidden",
                detail="The form is missing its CSRF token or it is stale: reload the page "
                "and submit it again.",
                hint="",
            )
        except StackyardError as exc:
            from stackyard.api.problems import problem

            status, body, headers = problem(exc)
            if status == 401:
                return self._signin_needed(request, page)
            if status >= 500:
                log.warning("%s: %s", type(exc).__name__, body["detail"] if status != 500 else "")
            response = self.render(
                request,
                "error.html",
                caller,
                code=status,
                title=body["title"],
                detail=body["detail"],
                hint=body.get("hint") or "",
                diagnostics=body.get("diagnostics") or [],
            )
            if "Retry-After" in headers:
                response.headers["Retry-After"] = headers["Retry-After"]
            return response

    def _signin_needed(self, request: Request, page: bool) -> Response:
        if page and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"/signin?next={quote(target, safe='')}", status_code=303, headers=HEADERS
            )
        return self.render(
            request,
            "error.html",
            None,
            code=401,
            title="Not signed in",
            detail="Sign in to continue.",
            hint="",
        )


@dataclass(frozen=True, slots=True)
class Upload:
    """A file from a form, read whole (the edge's body limit bounds it)."""

    filename: str
    data: bytes


async def read_form(request: Request, sealer: Sealer, binding: str) -> dict[str, Any]:
    """The form of ``request``, read and closed (its spooled files too), after checking its
    CSRF token against ``binding``."""
    from starlette.datastructures import UploadFile

    async with request.form() as form:
        given = form.get("csrf")
        if not isinstance(given, str) or not sealer.check_csrf(binding, given):
            raise Forbidden
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if value.filename:
                    out[key] = Upload(value.filename, await value.read())
            else:
                out.setdefault(key, value)
        return out


def portal(request: Request) -> Portal:
    """The portal of the app serving ``request``."""
    found = request.app.state.portal
    assert isinstance(found, Portal)
    return found


def redirect(url: str) -> RedirectResponse:
    """A 303 to ``url`` (after a form), with the portal's headers."""
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
