"""Test-only support of the Backstage export tests: Backstage's own ``@backstage/catalog-model``
from npm (installed once into a cache folder, pinned) and the node script that validates
entities with it (``backstage_validate.js``).

Without node or npm the tests skip, or fail under ``STACKYARD_REQUIRE_SERVICES=1`` (CI), whose
``.ci/run`` installs them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _services import require_or_skip

#: The pinned release of Backstage's catalog model the entities are checked against.
CATALOG_MODEL = "@backstage/catalog-model"
CATALOG_MODEL_VERSION = "1.10.3"
SCRIPT = Path(__file__).with_name("backstage_validate.js")


def cache_dir() -> Path:
    """Where the package is installed: ``$STACKYARD_TEST_NPM_CACHE/backstage`` (default
    ``~/.cache/stackyard-test-npm/backstage``)."""
    base = os.environ.get("STACKYARD_TEST_NPM_CACHE") or str(
        Path.home() / ".cache" / "stackyard-test-npm"
    )
    return Path(base) / "backstage"


def _installed(where: Path) -> bool:
    manifest = where / "node_modules" / "@backstage" / "catalog-model" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"] == CATALOG_MODEL_VERSION
    except (OSError, ValueError, KeyError):
        return False


def catalog_model() -> Path:
    """The folder holding ``node_modules/@backstage/catalog-model`` at the pinned version,
    installed with npm on first use (under a lock: two test processes install it once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        require_or_skip(
            "node and npm are needed to validate entities with @backstage/catalog-model"
        )
    where = cache_dir()
    if _installed(where):
        return where
    where.mkdir(parents=True, exist_ok=True)
    with (where / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed(where):
            (where / "package.json").write_text('{"private": true}\n')
            done = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--prefix",
                    str(where),
                    f"{CATALOG_MODEL}@{CATALOG_MODEL_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0 or not _installed(where):
                require_or_skip(f"npm could not install {CATALOG_MODEL}: {done.stderr[-2000:]}")
    return where


def validate(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Backstage's verdict on each entity: ``{index, ref, valid, errors}``, in order."""
    where = catalog_model()
    done = subprocess.run(
        ["node", str(SCRIPT), str(where)],
        input=json.dumps(entities),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    verdicts: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(verdicts) == len(entities)
    return verdicts


#: A workload reading the canary's secret and a volume.
READER = textwrap.dedent(
    """\
    apiVersion: score.dev/v1b1
    metadata: {name: reader}
    containers:
      main:
        image: none
        command: ["sh", "-c", "sleep 3600"]
        variables:
          TOKEN: ${resources.secret.token}
          DATA_DIR: ${resources.data.path}
    resources:
      secret: {type: canary}
      data: {type: volume}
    """
)

#: A workload whose name makes its Component's name longer than Backstage allows.
LONG_NAME = "a-workload-whose-name-is-long-enough-to-need-a-hashed-entity"
SLEEPER = textwrap.dedent(
    f"""\
    apiVersion: score.dev/v1b1
    metadata: {{name: {LONG_NAME}}}
    containers:
      main:
        image: none
        command: ["sh", "-c", "sleep 3600"]
        variables:
          DATA_DIR: ${{resources.data.path}}
    resources:
      data: {{type: volume}}
    """
)


@dataclass(frozen=True)
class Site:
    """A home with environment ``env`` (team ``team-checkout``, workload ``reader``) and
    ``other`` (no owner, a workload with a long name)."""

    home: Path
    settings: Any
    env: str
    other: str

    def as_admin(self) -> Any:
        return dataclasses.replace(self.settings, actor="root-admin")  # _apisupport.ADMIN
