"""Which runtimes this machine can use, and why not: the ``stackyard doctor`` report.

``local`` always runs (it needs nothing but Python); what it reports is how workloads are
confined. ``containers`` needs a container engine that starts a container here: podman is
probed with this host's quirks (``containers.engine.detect``, fresh, and cached for the
runtime); a Docker client is reported too, with whether a daemon answers, although the
runtime drives podman only (docs/adr/0006-container-engine.md).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackyard.errors import StackyardError

__all__ = ["diagnose"]


def diagnose(home: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The report: ``runtimes`` (``local``, ``containers``: ``usable`` and ``detail``) and
    ``engines`` (``podman``, ``docker``: found, working, why not). Changes nothing but the
    cached engine quirks in ``home``."""
    from stackyard.runtime.containers.engine import detect, find_podman
    from stackyard.runtime.isolation import describe

    isolation = describe("doctor")  # whether workloads would run as an account of their own
    isolation.pop("user")
    local = {
        "usable": True,
        "detail": "runs each container's command as a supervised host process (no images)",
        "isolation": isolation,
    }
    podman: dict[str, Any] = {"found": False, "path": None, "works": False}
    containers: dict[str, Any] = {"usable": False, "engine": None}
    path = find_podman()
    if path is None:
        podman["detail"] = "not installed (apt-get install podman runc)"
        containers["detail"] = "no container engine: install podman"
    else:
        podman.update(found=True, path=path)
        try:
            engine = detect(home, environ, fresh=True)
        except StackyardError as exc:
            podman["detail"] = exc.message
            containers["detail"] = f"podman cannot start a container here: {podman['detail']}"
        else:
            podman.update(
                works=True,
                version=engine.version,
                oci_runtime=engine.runtime or "podman's default",
                cgroup_manager=engine.cgroup_manager or "podman's default",
                ulimits=list(engine.ulimits),
                init=engine.init,
                rootless=engine.rootless,
                quirks=list(engine.quirks),
                detail="starts containers"
                + (f" with quirks: {'; '.join(engine.quirks)}" if engine.quirks else ""),
            )
            containers.update(
                usable=True,
                engine="podman",
                detail=f"podman {engine.version} starts containers on this machine",
            )
    return {
        "runtimes": {"local": local, "containers": containers},
        "engines": {"podman": podman, "docker": _docker()},
    }


def _docker() -> dict[str, Any]:
    """The Docker client, and whether a daemon answers it (informative: not used)."""
    path = shutil.which("docker")
    if path is None:
        return {"found": False, "path": None, "works": False, "detail": "not installed"}
    try:
        done = subprocess.run(
            [path, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"found": True, "path": path, "works": False, "detail": str(exc)}
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit {done.returncode}"
        return {
            "found": True,
            "path": path,
            "works": False,
            "detail": f"the client is installed but no daemon answers: {why}; "
            "the containers runtime uses podman, which needs no daemon",
        }
    return {
        "found": True,
        "path": path,
        "works": True,
        "version": done.stdout.strip(),
        "detail": "a daemon answers; the containers runtime uses podman, not Docker",
    }
