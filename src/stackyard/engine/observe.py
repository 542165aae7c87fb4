"""Observation: the read side of the engine, run concurrently over recorded resources."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from stackyard.diagnostics import Diagnostic, warning
from stackyard.engine.kinds import Kinds
from stackyard.errors import ProviderError
from stackyard.providers.api import Observed, ObserveRequest, ResourceMeta
from stackyard.state.api import ResourceRecord


def observe_all(
    env: str, records: Iterable[ResourceRecord], kinds: Kinds, *, parallelism: int = 10
) -> tuple[dict[str, Observed | None], list[Diagnostic]]:
    """Observe every record. An address whose observation failed is left out (assumed as
    recorded) and reported as a warning."""
    records = list(records)
    found: dict[str, Observed | None] = {}
    diags: list[Diagnostic] = []

    def one(record: ResourceRecord) -> tuple[str, Observed | None, Diagnostic | None]:
        try:
            kind = kinds.kind(record.kind)
            meta = ResourceMeta(record.address, record.kind, env, record.physical_name)
            obs = kind.observe(ObserveRequest(meta, record.full_config(), record.full_outputs()))
            return record.address, obs, None
        except ProviderError as exc:
            return (
                record.address,
                None,
                warning(
                    "Could not observe resource",
                    f"'{record.address}' could not be read ({exc.message}); it is assumed to be as "
                    "recorded.",
                    subject=record.address,
                ),
            )

    if not records:
        return found, diags
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(records)))) as pool:
        for address, obs, diag in pool.map(one, records):
            if diag is None:
                found[address] = obs
            else:
                diags.append(diag)
    return found, diags
