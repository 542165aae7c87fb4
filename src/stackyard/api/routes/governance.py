"""Governance and configuration: the audit log (and its verification), cost, policies (list,
eval, test), access grants and the role table, API tokens, the platform configuration, and
who you are."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from stackyard.api.routing import Cursor, Limit, Who, folder, page, yard
from stackyard.api.schemas import (
    Document,
    FilesRequest,
    GrantRequest,
    Identity,
    Page,
    PolicyEval,
    TokenRequest,
)
from stackyard.errors import InvalidInputError

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(prefix="/api/v1", tags=["governance"])


@router.get("/whoami", response_model=Identity, summary="Who the server takes you for")
async def whoami(who: Who) -> Identity:
    """The authenticated user, their extra teams and how they authenticated."""
    return Identity(user=who.user, teams=list(who.teams), via=who.via)


# -- audit -------------------------------------------------------------------------------------


def _since(text: str | None) -> float | None:
    from stackyard.model.platform import parse_duration

    if text is None:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInputError(
            f"Invalid since '{text[:40]}'",
            hint="Use a duration (2h, 1d) or an ISO time (2026-11-30T12:00:00Z).",
        ) from None


@router.get("/audit", response_model=Page, summary="Read the audit log")
async def audit(
    request: Request,
    who: Who,
    since: Annotated[str | None, Query(max_length=40, description="2h, 1d or an ISO time.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    """Audit events in chain order (``stackyard audit -o json``, paginated)."""
    from stackyard.environments import views

    start = _since(since)
    rows = await yard(request).call(
        who, lambda ws: [e.to_json() for e in views.audit(ws, since=start)]
    )
    return page(request, rows, limit, cursor)


@router.get("/audit/verify", response_model=Document, summary="Verify the audit chain")
async def audit_verify(request: Request, who: Who) -> dict[str, Any]:
    """The keyed hash chain and signed head checked (``ok`` false when broken)."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: views.audit_verification(ws).to_json()
    )
    return out


# -- cost --------------------------------------------------------------------------------------


@router.get("/cost", response_model=Document, summary="Monthly cost")
async def cost(
    request: Request,
    who: Who,
    env: Annotated[str | None, Query(max_length=63)] = None,
    team: Annotated[str | None, Query(max_length=63)] = None,
    by: Annotated[str, Query(pattern="^(resource|workload|environment)$")] = "resource",
) -> dict[str, Any]:
    """Monthly cost from each component's declared cost (``stackyard cost -o json``)."""
    from stackyard.environments.cost import report

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: report(ws, env=env, team=team, by=by).to_json()
    )
    return out


# -- policies ----------------------------------------------------------------------------------


@router.get("/policies", response_model=Document, summary="List the applied policies")
async def policies(request: Request, who: Who) -> dict[str, Any]:
    """Layer, target, stages and modules of each applied policy, and the revision."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(who, lambda ws: views.policies(ws).to_json())
    return out


@router.post("/policies/eval", response_model=Document, summary="Evaluate the policies")
async def policy_eval(request: Request, who: Who, body: PolicyEval) -> dict[str, Any]:
    """The decision of the applied policies for an input document (not logged: a dry run)."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: views.evaluate(ws, body.stage, body.input, env=body.env).to_json()
    )
    return out


@router.post("/policies/test", response_model=Document, summary="Run Rego unit tests")
async def policy_test(request: Request, who: Who, body: FilesRequest) -> dict[str, Any]:
    """Run the ``test_*`` rules of the given ``*_test.rego`` files against their policies."""
    from stackyard.policy.testing import run_dir

    def run(_ws: Workspace) -> dict[str, Any]:
        with folder(body.files) as directory:
            results = run_dir(directory)
        failed = [r for r in results if not r.passed]
        return {
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "tests": [r.to_json() for r in results],
        }

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


# -- access ------------------------------------------------------------------------------------


@router.get("/access/grants", response_model=Document, summary="List every grant")
async def grants(request: Request, who: Who) -> dict[str, Any]:
    """Every grant, and who is asking (``stackyard access list -o json``)."""
    from stackyard.environments import grants as service

    out: dict[str, Any] = await yard(request).call(who, lambda ws: service.grants(ws).to_json())
    return out


@router.post("/access/grants", response_model=Document, summary="Grant a role")
async def grant(request: Request, who: Who, body: GrantRequest) -> dict[str, Any]:
    """Grant a role to a user or a team (admins only; audited)."""
    from stackyard.environments import grants as service

    g = service.parse(body.role, user=body.user, team=body.team, env=body.env, env_type=body.type)
    out: dict[str, Any] = await yard(request).call(who, lambda ws: service.grant(ws, g).to_json())
    return out


@router.post("/access/grants/revoke", response_model=Document, summary="Revoke a grant")
async def revoke(request: Request, who: Who, body: GrantRequest) -> dict[str, Any]:
    """Revoke a grant (the last organisation-wide admin cannot be revoked)."""
    from stackyard.environments import grants as service

    g = service.parse(body.role, user=body.user, team=body.team, env=body.env, env_type=body.type)
    out: dict[str, Any] = await yard(request).call(who, lambda ws: service.revoke(ws, g).to_json())
    return out


@router.get("/access/roles", response_model=Document, summary="Which role may do which action")
async def roles(who: Who) -> dict[str, Any]:
    """The role table (``stackyard access table -o json``)."""
    from stackyard.environments.grants import role_table

    return role_table().to_json()


# -- platform ----------------------------------------------------------------------------------


@router.get("/platform", response_model=Page, summary="Show the platform configuration")
async def platform_show(
    request: Request, who: Who, limit: Limit = 50, cursor: Cursor = None
) -> Page:
    """The applied documents (``stackyard platform show -o json``, paginated)."""
    from stackyard.environments.views import platform_documents

    rows = await yard(request).call(who, platform_documents)
    return page(request, rows, limit, cursor)


@router.post("/platform/apply", response_model=Document, summary="Apply platform documents")
async def platform_apply(request: Request, who: Who, body: FilesRequest) -> dict[str, Any]:
    """Apply a folder of platform documents (path -> YAML); ``dry_run`` shows the changes."""
    from stackyard.environments import platform as plat

    def run(ws: Workspace) -> dict[str, Any]:
        with folder(body.files) as directory:
            return plat.apply_dir(
                ws.platform, ws.access, directory, confirm=lambda _q: not body.dry_run
            )

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


# -- tokens ------------------------------------------------------------------------------------


@router.get("/tokens", response_model=Document, summary="List API tokens")
async def list_tokens(
    request: Request, who: Who, user: Annotated[str | None, Query(max_length=200)] = None
) -> dict[str, Any]:
    """Every token (of ``user``) without its secret (admins only; ``stackyard token list``)."""
    from stackyard.identity import tokens

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: tokens.list_tokens(ws, user=user).to_json()
    )
    return out


@router.post("/tokens", response_model=Document, summary="Create an API token")
async def create_token(request: Request, who: Who, body: TokenRequest) -> dict[str, Any]:
    """A new token for a user, shown once in this response (admins only; audited)."""
    from stackyard.identity import tokens

    out: dict[str, Any] = await yard(request).call(
        who,
        lambda ws: tokens.create(
            ws, user=body.user, ttl=body.ttl, description=body.description
        ).to_json(),
    )
    return out


@router.delete("/tokens/{token_id}", response_model=Document, summary="Revoke an API token")
async def revoke_token(
    request: Request, who: Who, token_id: Annotated[str, Path(max_length=100)]
) -> dict[str, Any]:
    """Revoke a token: it is refused from now on (admins only; audited)."""
    from stackyard.identity import tokens

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: tokens.revoke(ws, token_id).to_json(time.time())
    )
    return out
