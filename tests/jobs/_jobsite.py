"""The jobs tests' site: a home with a test-double component (``noop-thing``, a
``noop.resource`` whose latency and failures a Score's params choose), a platform of two
environments, on the SQLite home or on a fresh PostgreSQL database per test."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

THING = """\
apiVersion: stackyard.dev/v1
kind: Component
metadata:
  name: noop-thing
  version: 1.0.0
  owner: team-platform
  description: A test double (noop.resource) whose latency and failures the params choose.
  lifecycle: production
spec:
  provides: {type: thing}
  sla: {availability: "99.0", support: best-effort}
  inputs:
    type: object
    properties:
      latency_ms: {type: number, default: 0}
      create_fails: {default: "never"}
      transient: {type: boolean, default: false}
      note: {type: string, default: ""}
    additionalProperties: false
  resources:
    thing:
      kind: noop.resource
      config:
        latency_ms: ${inputs.latency_ms}
        fail: {create: "${inputs.create_fails}"}
        fail_transient: ${inputs.transient}
        note: ${inputs.note}
  outputs:
    id: ${resources.thing.id}
  cost: {monthly: "0.00", currency: USD}
"""


def platform(prefix: str, *, pg: tuple[str, str] | None = None) -> str:
    """Type ``jobs-lite`` (volumes and things; with ``pg``, also databases on the machine's
    PostgreSQL and Redis) and the environments ``<prefix>-a`` and ``<prefix>-b``."""
    extra = ""
    if pg is not None:
        pg_params, rd_params = pg
        extra = textwrap.indent(
            textwrap.dedent(
                f"""\
                - {{type: postgres, component: postgres-database@^1}}
                - {{type: postgres-instance, component: postgres-external@^1, params: {pg_params}}}
                - {{type: redis-instance, component: redis-external@^1, params: {rd_params}}}
                """
            ),
            "    ",
        )
    envs = "".join(
        textwrap.dedent(
            f"""\
            ---
            apiVersion: stackyard.dev/v1
            kind: Environment
            metadata: {{name: {prefix}-{x}}}
            spec: {{type: jobs-lite, owner: team-checkout}}
            """
        )
        for x in ("a", "b")
    )
    return (
        textwrap.dedent(
            """\
            apiVersion: stackyard.dev/v1
            kind: EnvironmentType
            metadata: {name: jobs-lite}
            spec:
              description: Volumes and test doubles.
              runtime: local
              bindings:
                - {type: volume, component: local-volume@^1}
                - {type: thing, component: noop-thing@^1}
            """
        )
        + extra
        + textwrap.dedent(
            """\
            ---
            apiVersion: stackyard.dev/v1
            kind: Team
            metadata: {name: team-checkout}
            spec: {members: []}
            """
        )
        + envs
    )


def score(name: str, *, db: bool = False, **thing: Any) -> str:
    """A Score workload ``name``: a sleeper with a ``thing`` (params ``thing``), and a
    PostgreSQL database when ``db``."""
    import json

    params = json.dumps(thing)
    return textwrap.dedent(
        f"""\
        apiVersion: score.dev/v1b1
        metadata: {{name: {name}}}
        containers:
          main:
            image: none
            command: ["sh", "-c", "sleep 3600"]
            variables:
              THING: ${{resources.thing.id}}
        resources:
          thing:
            type: thing
            params: {params}
        """
        + ("  db: {type: postgres}\n" if db else "")
    )


@dataclass
class Site:
    """A home with the platform applied; ``envs`` are its two environments (created)."""

    home: Path
    prefix: str
    ledger: Path
    database_url: str | None

    @property
    def envs(self) -> tuple[str, str]:
        return (f"{self.prefix}-a", f"{self.prefix}-b")

    def settings(self, **kw: Any) -> Any:
        from stackyard.settings import Settings

        return Settings.load(**kw)

    def ws(self) -> Any:
        from stackyard.environments.workspace import Workspace

        return Workspace.open(self.settings())

    def environ(self) -> dict[str, str]:
        """The environment of a subprocess working on this site."""
        env = {
            **os.environ,
            "STACKYARD_HOME": str(self.home),
            "STACKYARD_NOOP_LEDGER": str(self.ledger),
        }
        env.pop("STACKYARD_DATABASE_URL", None)
        if self.database_url:
            env["STACKYARD_DATABASE_URL"] = self.database_url
        return env


def _publish_thing(home: Path, tmp: Path) -> None:
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry

    comp = tmp / "noop-thing"
    comp.mkdir()
    (comp / "component.yaml").write_text(THING)
    (comp / "README.md").write_text("# noop-thing\n\nA test double.\n")
    registry = open_registry(None, home=home)
    try:
        publish(
            comp,
            registry=registry,
            keyring=Keyring(home),
            kinds=ProviderRegistry.discover(),
            run_component_tests=False,
        )
    finally:
        registry.close()


def make_site(
    library_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    *,
    database_url: str | None,
    pg: tuple[str, str] | None = None,
) -> Iterator[Site]:
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("STACKYARD_NOOP_LEDGER", str(ledger))
    if database_url:
        monkeypatch.setenv("STACKYARD_DATABASE_URL", database_url)
    _publish_thing(library_home, tmp_path)
    folder = tmp_path / "platform"
    folder.mkdir()
    (folder / "platform.yaml").write_text(platform(prefix, pg=pg))
    site = Site(library_home, prefix, ledger, database_url)
    with site.ws() as ws:
        apply_dir(ws.platform, ws.access, folder, confirm=lambda _q: True)
        for env in site.envs:
            lifecycle.create(ws, env)
    try:
        yield site
    finally:
        with site.ws() as ws:
            for env in site.envs:
                try:
                    lifecycle.destroy(ws, env)
                except Exception as exc:  # report, and keep tearing down
                    print(f"teardown: destroy {env} failed: {exc}")
