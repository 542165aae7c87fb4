"""Run: an environment's runtime, and each changed workload rendered with its resources' outputs
and started on it, waited for until it is ready."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.environments.workloads import render

if TYPE_CHECKING:
    from stackyard.engine.lease import HeldLock
    from stackyard.environments.platform import Platform
    from stackyard.environments.target import Target
    from stackyard.model.environment import Environment
    from stackyard.runtime.local import LocalRuntime
    from stackyard.runtime.spec import WorkloadStatus


def env_dir(home: Path, env: str) -> Path:
    """The environment's folder under the home (runtime files, logs)."""
    return home / "envs" / env


def runtime_for(
    home: Path, env: str, *, kind: str = "local", installation: str = ""
) -> LocalRuntime:
    """The environment's runtime: ``kind`` is its type's ``runtime`` (``local`` or
    ``containers``; see ``runtime_kind``). ``installation`` labels what a container engine
    makes."""
    if kind == "containers":
        import os

        from stackyard.runtime.containers.runtime import ContainersRuntime

        return ContainersRuntime(
            env_dir(home, env) / "containers",
            home=home,
            env=env,
            installation=installation,
            environ=os.environ,
        )
    from stackyard.runtime.isolation import env_purpose
    from stackyard.runtime.local import LocalRuntime

    return LocalRuntime(env_dir(home, env) / "workloads", account_for=env_purpose(home, env))


def runtime_kind(platform: Platform, env: Environment | None) -> str:
    """The runtime of ``env``'s type (``local`` for an unknown environment or type)."""
    if env is None:
        return "local"
    found = platform.types.get(env.type)
    return found.runtime if found is not None else "local"


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

    On the ``containers`` runtime, the loopback endpoints the outputs name are first pointed
    at the environment's relay (``ContainersRuntime.reachable``): a container cannot reach
    127.0.0.1 on the host.

    The lease is kept while a workload gets ready (``held.busy``: the wait is bounded by
    ``ready_timeout``).
    """
    statuses: dict[str, WorkloadStatus] = {}
    started = False
    for name, found in outputs.items():
        by_name = runtime.reachable(name, found)
        spec = render(target.workloads[name], env=target.env.name, outputs=by_name)
        _, did = runtime.start(spec)
        started = started or did
        say(f"{'started' if did else 'unchanged'} workload '{name}'")
        with held.busy():
            statuses[name] = runtime.wait_ready(name, timeout=ready_timeout)
        say(f"workload '{name}' is {statuses[name].state}")
    return statuses, started
