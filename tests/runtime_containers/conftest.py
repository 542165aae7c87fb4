"""Fixtures of the containers runtime's tests: a built busybox image, a platform with an
EnvironmentType ``containers``, and a leak check for podman objects labelled with the env."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ctrsupport import open_ws, podman_leftovers
from _images import busybox_image

from _platform import EXAMPLES

CONTAINERS_TYPE = """\
---
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: containers}
spec:
  description: Workloads as podman containers; volumes only.
  runtime: containers
  attestation: optional
  bindings:
    - {type: volume, component: local-volume@^1}
"""


@pytest.fixture(scope="session")
def image() -> str:
    """The busybox image, built from busybox-static when missing."""
    return busybox_image()


@pytest.fixture
def cenv(library_home: Path, tmp_path: Path, sweeper: Any, image: str) -> Iterator[str]:
    """A live environment of type ``containers`` (destroyed after the test; podman swept)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    sweeper.add_check(podman_leftovers)
    platform = tmp_path / "platform"
    platform.mkdir()
    shutil.copy(EXAMPLES / "platform" / "teams.yaml", platform / "teams.yaml")
    (platform / "types.yaml").write_text(CONTAINERS_TYPE)
    env = sweeper.env
    with open_ws() as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        lifecycle.create(ws, env, type_name="containers", owner="team-checkout")
    try:
        yield env
    finally:
        with open_ws() as ws:
            record = ws.records.environment(env)
            if record is not None and record.status not in ("declared", "destroyed"):
                lifecycle.destroy(ws, env)
