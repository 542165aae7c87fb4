"""Observation: the read side of the engine, run concurrently over recorded resources."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

from stackyard.diagnostics import Diagnostic, warning
from stackyard.engine.kinds import Kinds
from stackyard.errors import ProviderError
from stackyard.providers.api import Observed, ObserveRequest, ResourceMeta
from stackyard.state.api import ResourceRecord

PROBE = 8
CHEAP_OBSERVE_S = 0.001


def observe_all(
    env: str,
    records: Iterable[ResourceRecord],
    kinds: Kinds,
    *,
    parallelism: int = 10,
    installation: str = "",
) -> tuple[dict[str, Observed | None], list[Diagnostic]]:
    """Observe every record. An address whose observation failed is left out (assumed as
    recorded) and reported as a warning. ``installation`` is the store's installation id
    (ownership labels carry it)."""
    records = list(records)
    found: dict[str, Observed | None] = {}
    diags: list[Diagnostic] = []

    def one(record: ResourceRecord) -> tuple[str, Observed | None, Diagnostic | None]:
        try:
            kind = kinds.kind(record.kind)
            meta = ResourceMeta(
                record.address, record.kind, env, record.physical_name, installation
            )
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
    # Probe a few observations first: when they are cheap (local files, in-process state),
    # threads only add GIL contention, so the rest run inline. Slow (network) observations
    # get ``parallelism`` workers pulling from one shared iterator.
    source = iter(records)
    mutex = threading.Lock()
    results: list[tuple[str, Observed | None, Diagnostic | None]] = []
    started = time.perf_counter()
    for record in itertools.islice(source, PROBE):
        results.append(one(record))
    probed = len(results)
    cheap = probed and (time.perf_counter() - started) / probed < CHEAP_OBSERVE_S

    def worker() -> None:
        local: list[tuple[str, Observed | None, Diagnostic | None]] = []
        while True:
            with mutex:
                record = next(source, None)
            if record is None:
                break
            local.append(one(record))
        with mutex:
            results.extend(local)

    if cheap or parallelism <= 1:
        worker()
        return _collect(results, found, diags)
    threads = [
        threading.Thread(target=worker, name=f"stackyard-observe-{i}", daemon=True)
        for i in range(max(1, min(parallelism, len(records) - probed)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _collect(results, found, diags)


def _collect(
    results: list[tuple[str, Observed | None, Diagnostic | None]],
    found: dict[str, Observed | None],
    diags: list[Diagnostic],
) -> tuple[dict[str, Observed | None], list[Diagnostic]]:
    for address, obs, diag in sorted(results, key=lambda r: r[0]):
        if diag is None:
            found[address] = obs
        else:
            diags.append(diag)
    return found, diags
