"""Preflight: what a deploy would report before its first provider call, without deploying
(``workload validate --env``): the same resolve and expand steps, nothing planned or applied."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.diagnostics import Diagnostic, error
from stackyard.environments.expansion import expand_resolution
from stackyard.environments.resolver import Sources, resolve_target
from stackyard.environments.target import Target, live_workloads
from stackyard.environments.workloads import load_score, parse_spec
from stackyard.errors import InvalidInputError
from stackyard.policy.rbac import Action

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stackyard.environments.workspace import Workspace


def deploy_diagnostics(ws: Workspace, env_name: str, paths: Sequence[Path]) -> list[Diagnostic]:
    """What a deploy of ``paths`` to ``env_name`` would report before its first provider call.

    The same steps as a deploy: load the Score files, resolve and expand them with the
    environment's live workloads, and check every config (``expansion.config_diagnostics``).
    Nothing is planned, applied or recorded.
    """
    ws.access.authorize(Action.VIEW, env=env_name)
    env = ws.environment(env_name)
    diags: list[Diagnostic] = []
    mine: dict[str, Any] = {}
    for path in paths:
        try:
            wl = parse_spec(load_score(path), file=str(path))
        except InvalidInputError as exc:
            diags.extend(exc.diagnostics or [error("Invalid Score file", exc.message)])
            continue
        if wl.name in mine:
            diags.append(
                error(
                    "Duplicate workload",
                    f"Two Score files define workload '{wl.name}'; each name must be unique.",
                    file=str(path),
                )
            )
        mine[wl.name] = wl
    if diags:
        return diags
    workloads = live_workloads(ws.records, env_name)
    workloads.update(mine)
    sources = Sources(ws.platform(), ws.records, ws.catalog, ws.store.installation_id())
    try:
        res, found = resolve_target(
            Target(env, workloads, set(mine)),
            sources,
            core_allowed=lambda: ws.access.allowed(
                Action.OUTPUTS_REVEAL_ADMIN, ws.access.target(env_name)
            ),
        )
        _, more = expand_resolution(
            res,
            env=env_name,
            kinds=ws.kinds,
            installation=sources.installation,
            max_resources=ws.settings.max_resources,
        )
    except InvalidInputError as exc:  # an unknown environment type, say
        return list(exc.diagnostics)
    return [*found, *more]
