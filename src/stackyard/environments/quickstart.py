"""``stackyard quickstart``: from nothing to a running app, idempotently.

init the home and publish the library → apply ``examples/platform`` → create ``dev`` with its
core servers → create the ephemeral child ``quickstart`` from it → deploy ``examples/hello``.
Every step skips what is already there, so a second run changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackyard.environments import lifecycle
from stackyard.environments.deploy import deploy_files
from stackyard.environments.inspect import outputs
from stackyard.environments.platform import apply_dir
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.status import EnvironmentStatus
from stackyard.settings import Settings

PARENT = "dev"
CHILD = "quickstart"
CHILD_TYPE = "ephemeral"
CHILD_TTL_S = 24 * 3600


def examples_dir() -> Path:
    """The examples: the repository's ``examples/`` (source checkout) or the wheel's copy."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "examples", here.parents[1] / "_examples"):
        if (candidate / "platform").is_dir() and (candidate / "hello" / "score.yaml").is_file():
            return candidate
    raise InvalidInputError(
        "The examples folder is missing from this installation",
        hint="Pass --examples DIR (a checkout's examples/ folder).",
    )


def quickstart(
    settings: Settings,
    *,
    examples: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole delivery model once; returns what a newcomer needs next."""
    from stackyard.service import init_home

    say = progress or (lambda _m: None)
    root = examples or examples_dir()
    started = time.monotonic()
    say("1/5 init the home and publish the component library")
    init = init_home(settings, progress=say)
    with Workspace.open(settings) as ws:
        say(f"2/5 apply the platform configuration {root / 'platform'}")
        plat = apply_dir(ws.platform, ws.access, root / "platform", confirm=lambda _q: True)
        say(f"3/5 create '{PARENT}' with its core servers")
        parent, _, parent_created = lifecycle.create(ws, PARENT, progress=say)
        say(f"4/5 create the ephemeral environment '{CHILD}' from '{PARENT}'")
        existing = ws.records.environment(CHILD)
        if (
            existing is not None
            and existing.status is EnvironmentStatus.READY
            and existing.expires_at
            and existing.expires_at < time.time() + 3600
        ):
            lifecycle.extend(ws, CHILD, ttl_s=CHILD_TTL_S)
        child, _, child_created = lifecycle.create(
            ws,
            CHILD,
            type_name=CHILD_TYPE,
            parent=PARENT,
            ttl_s=None if existing else CHILD_TTL_S,
            progress=say,
        )
        say(f"5/5 deploy {root / 'hello' / 'score.yaml'} to '{CHILD}'")
        result = deploy_files(
            ws, [root / "hello" / "score.yaml"], CHILD, confirm=lambda _p: True, progress=say
        )
        masked = outputs(ws, CHILD, "hello")
        child = ws.environment(CHILD)
    hello = result.workloads.get("hello")
    url = (hello.endpoints.get("web") if hello else None) or ""
    changed = (
        bool(init.published) or plat["applied"] or parent_created or child_created or result.changed
    )
    return {
        "url": url,
        "changed": changed,
        "environments": {"parent": parent.to_json(), "child": child.to_json()},
        "deployment": result.deployment.to_json(),
        "outputs": masked,
        "duration_s": round(time.monotonic() - started, 2),
        "next": [
            f"stackyard status {CHILD}",
            f"stackyard logs {CHILD} hello",
            f"stackyard outputs {CHILD} hello --reveal",
            f"stackyard release create {root / 'hello' / 'score.yaml'}",
            f"stackyard deploy --release <id> --env {PARENT} --yes",
            "stackyard env create staging && stackyard promote <id> --to staging --yes",
            f"stackyard env destroy {CHILD} --yes",
        ],
    }
