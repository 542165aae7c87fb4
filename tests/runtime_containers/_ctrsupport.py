"""Test-only support of the containers runtime tests (imported under this unique name: every
test folder has a ``conftest``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from _images import podman


def podman_leftovers(env: str) -> list[str]:
    """Containers, networks and volumes podman has with ``env``'s label."""
    exe = podman()
    out: list[str] = []
    for what, args in (
        ("container", ["ps", "-a", "--format", "{{.Names}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
    ):
        done = subprocess.run(
            [exe, *args, "--filter", f"label=dev.stackyard.env={env}"],
            capture_output=True,
            text=True,
            check=True,
        )
        out += [f"podman {what} {n}" for n in done.stdout.split()]
    return out


def open_ws() -> Any:
    """A workspace on the test's home."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    return Workspace.open(Settings.load())


def write_score(directory: Path, name: str, containers: dict[str, Any], **extra: Any) -> Path:
    """A Score file (JSON is YAML) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    data = {"apiVersion": "score.dev/v1b1", "metadata": {"name": name}, "containers": containers}
    data.update(extra)
    path.write_text(json.dumps(data))
    return path
