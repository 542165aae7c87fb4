"""Run: an environment's runtime, and each changed workload rendered with its resources' outputs
and started on it, waited for until it is ready."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.environments.workloads import render

if TYPE_CHECKING:
    from stackyard.engine.lease import HeldLock
    from stackyard.environments.target import Target
    from stackyard.runtime.local import LocalRuntime
    from stackyard.runtime.spec import WorkloadStatus


def env_dir(home: Path, env: str) -> Path:
    """The environment's folder under the home (runtime files, logs)."""
    return home / "envs" / env


def runtime_for(home: Path, env: str) -> LocalRuntime:
    """The environment's local runtime."""
    from stackyard.runtime.isolation import env_purpose
    from stackyard.runtime.local import LocalRuntime

    return LocalRuntime(env_dir(home, env) / "workloads", account_for=env_purpose(home, env))


def run(
    runtime: LocalRuntime,
    target: Target,
    outputs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    held: HeldLock,
    ready_timeout: float,
    say: Callable[[str], None],
) -> tuple[dict[str, WorkloadStatus], bool]:
    """Start each workload of ``outputs`` (workload → resource name → outputs) and wait until
    it is ready; returns each one's status, and whether any was (re)started.

    The lease is kept while a workload gets ready (``held.busy``: the wait is bounded by
    ``ready_timeout``).
    """
    statuses: dict[str, WorkloadStatus] = {}
    started = False
    for name, by_name in outputs.items():
        spec = render(target.workloads[name], env=target.env.name, outputs=by_name)
        _, did = runtime.start(spec)
        started = started or did
        say(f"{'started' if did else 'unchanged'} workload '{name}'")
        with held.busy():
            statuses[name] = runtime.wait_ready(name, timeout=ready_timeout)
        say(f"workload '{name}' is {statuses[name].state}")
    return statuses, started
