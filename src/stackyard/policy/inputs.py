"""The one input document every decision is made on (DESIGN §6), with secrets masked.

``{stage, actor{name,teams,roles}, environment{name,type,owner,ephemeral,expires_at,regions,
labels}, workload, release, component, plan{changes[{address,kind,action,before,after}],
summary}, cost{monthly_total,delta,currency,by_resource}, attestations}``

Its schema is documented in ``docs/policies.md``. Masking is done twice: values wrapped as
``Secret`` (sensitive config, secret outputs) are masked where they are, and then every string
holding one of the known secret values (secret outputs and secret params of the environment)
is replaced, wherever it sits, so a secret that reached a plain field is caught too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stackyard.model.values import MASK, mask

#: Secret values shorter than this are not scrubbed by value (too likely to hit plain text).
MIN_SCRUB_LENGTH = 6


def timestamp(ts: float | None) -> str | None:
    """Epoch seconds → RFC 3339 UTC (what ``time.parse_rfc3339_ns`` reads), or None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def actor_doc(name: str, teams: Sequence[str], roles: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``actor``: name, teams and the roles granted (``{role, scope}``)."""
    return {
        "name": name,
        "teams": sorted(teams),
        "roles": [{"role": r, "scope": s} for r, s in sorted(set(roles))],
    }


def environment_doc(
    *,
    name: str,
    type: str,
    owner: str | None,
    ephemeral: bool,
    expires_at: float | None,
    labels: Mapping[str, str],
    regions: Sequence[str] = ("local",),
    parent: str | None = None,
) -> dict[str, Any]:
    """``environment``."""
    return {
        "name": name,
        "type": type,
        "owner": owner,
        "ephemeral": ephemeral,
        "expires_at": timestamp(expires_at),
        "regions": list(regions),
        "labels": dict(labels),
        "parent": parent,
    }


def document(
    stage: str,
    *,
    actor: Mapping[str, Any],
    environment: Mapping[str, Any] | None = None,
    workload: Mapping[str, Any] | None = None,
    release: Mapping[str, Any] | None = None,
    component: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    cost: Mapping[str, Any] | None = None,
    attestations: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """The masked input document."""
    doc = {
        "stage": stage,
        "actor": dict(actor),
        "environment": dict(environment) if environment is not None else None,
        "workload": workload,
        "release": release,
        "component": component,
        "plan": plan,
        "cost": cost,
        "attestations": attestations or {},
    }
    masked: dict[str, Any] = scrub(mask(doc), secrets)
    return masked


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every occurrence of a known secret value inside strings with the mask."""
    known = sorted(
        {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SCRUB_LENGTH},
        key=len,
        reverse=True,
    )
    if not known:
        return value
    return _scrub(value, known)


def _scrub(value: Any, known: Sequence[str]) -> Any:
    if isinstance(value, str):
        for s in known:
            if s in value:
                value = value.replace(s, MASK)
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, known) for v in value]
    return value
