"""Component tests: deploy each ``tests/*.yaml`` into a throw-away environment, check, destroy.

A test file holds a Score workload and what it must get::

    workload: {apiVersion: score.dev/v1b1, metadata: {name: checkout}, containers: ..., resources: ...}
    expect:
      outputs: [host, port, username, password]   # keys every request of the tested type gets

Each resource request is served by the component under test when it asks for the type the
component provides, and otherwise by the built-in library component for that type (a
PostgreSQL server for ``postgres-instance``, …); requirements resolve the same way and are
shared per type. Everything runs on the ``local`` cloud inside a temporary home, with its
own state, and is destroyed at the end; a test fails if anything is left in that state.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackyard import library
from stackyard.diagnostics import Diagnostic, error
from stackyard.engine.engine import Engine
from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds, naming_lookup
from stackyard.errors import InvalidInputError, StackyardError
from stackyard.model.component import ComponentManifest, apply_inputs, load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.placeholders import lookup, substitute
from stackyard.model.source import load_yaml
from stackyard.model.values import reveal
from stackyard.model.workload import Workload, parse_workload
from stackyard.resolve.facts import Facts, spread
from stackyard.resolve.graph import Instance, expand, instance_context

TEST_GLOB = "*.yaml"


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One test file's result."""

    file: str
    ok: bool
    diagnostics: tuple[Diagnostic, ...] = ()
    #: when the pass was remembered rather than run now (``testcache``): the run's time
    cached_at: float | None = None


def run_tests(
    component_dir: Path, manifest: ComponentManifest, *, kinds: Kinds
) -> list[TestOutcome]:
    """Run every test of the component in ``component_dir``; an empty list when it has none."""
    files = (
        sorted((component_dir / "tests").glob(TEST_GLOB))
        if (component_dir / "tests").is_dir()
        else []
    )
    return [_run_one(path, manifest, kinds) for path in files]


def _run_one(path: Path, manifest: ComponentManifest, kinds: Kinds) -> TestOutcome:
    name = path.name
    try:
        doc = load_yaml(path, what="component test")
        if not isinstance(doc, Mapping) or not isinstance(doc.get("workload"), Mapping):
            return _fail(
                name, "Invalid component test", "A test file needs a 'workload' (a Score document)."
            )
        workload = parse_workload(doc["workload"], file=str(path))
        expect = doc.get("expect") or {}
        wanted = (
            [str(k) for k in (expect.get("outputs") or [])] if isinstance(expect, Mapping) else []
        )
        with _throwaway_home() as home:
            return _deploy_check_destroy(name, workload, wanted, manifest, kinds, home)
    except StackyardError as exc:
        diags = getattr(exc, "diagnostics", ())
        return TestOutcome(
            name, False, tuple(diags) or (error("Component test failed", exc.message, file=name),)
        )


def _deploy_check_destroy(
    name: str,
    workload: Workload,
    wanted: list[str],
    manifest: ComponentManifest,
    kinds: Kinds,
    home: Path,
) -> TestOutcome:
    from stackyard.state.secrets import SecretBox  # the store is an adapter: imported at use
    from stackyard.state.sql import SqlStateStore

    env = "ct" + secrets.token_hex(4)
    instances = _instances(workload, manifest, env)
    graph, diags = expand(list(instances.values()), env=env, naming_for=naming_lookup(kinds))
    if diags:
        return TestOutcome(name, False, tuple(d.with_file(name) for d in diags))
    problems: list[Diagnostic] = []
    store = SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))
    try:
        engine = Engine(store=store, kinds=kinds, events=Events())
        try:
            _, result = engine.converge(env, graph)
            if not result.ok:
                for address, why in {**result.failed}.items():
                    problems.append(
                        error("Component test apply failed", f"{address}: {why}", file=name)
                    )
            else:
                outputs = {
                    req.name: engine.outputs(env, graph, req.uid)
                    for req in workload.resources.values()
                }
                problems.extend(_check(name, workload, manifest, outputs, wanted))
        finally:
            destroyed = engine.apply(engine.plan(env, None), None)
            if not destroyed.ok or store.snapshot(env).resources:
                problems.append(
                    error(
                        "Component test left resources behind",
                        f"Destroy failed: {destroyed.failed}",
                        file=name,
                    )
                )
    finally:
        store.close()
    return TestOutcome(name, not problems, tuple(problems))


def _instances(
    workload: Workload, manifest: ComponentManifest, env: str
) -> dict[ResourceUid, Instance]:
    """One instance per request, plus shared library instances for every requirement."""
    out: dict[ResourceUid, Instance] = {}

    def component_for(type_: str, params: Mapping[str, Any] | None) -> ComponentManifest:
        """The tested component for its own type; else the first library component (by name)
        that provides ``type_`` and takes ``params`` as they are (an ``*-external`` one whose
        server must be named gives way to one that needs nothing, such as ``*-server``)."""
        if type_ == manifest.provides:
            return manifest
        for name in library.names():
            candidate = load_component(library.path(name))
            if candidate.provides != type_:
                continue
            try:
                apply_inputs(candidate, params)
            except InvalidInputError:
                continue
            return candidate
        raise StackyardError(
            f"No component provides '{type_}' in the test environment",
            hint="A component test may only request the tested type or a type the built-in library provides.",
        )

    def add(uid: ResourceUid, comp: ComponentManifest, params: Mapping[str, Any]) -> None:
        if uid in out:
            return
        requires: dict[str, ResourceUid] = {}
        for alias, req in comp.requires.items():
            target = ResourceUid(req.type, req.klass or "default", req.id or "test-core")
            add(target, component_for(req.type, req.params), req.params)
            requires[alias] = target
        # The inputs the environment fills (``resolve.facts``), as far as they are known
        # without one: a route's upstream is its ``port``.
        inputs, _ = Facts().fill(comp, apply_inputs(comp, params), workload="", where=str(uid))
        out[uid] = Instance(
            uid=uid,
            component=spread(comp, inputs),
            inputs=inputs,
            # The throw-away environment belongs to the team that owns the component.
            context=instance_context(
                env=env,
                env_type="ephemeral",
                workload=workload.name,
                uid=uid,
                owner=manifest.owner,
            ),
            requires=requires,
        )

    for req in workload.resources.values():
        add(req.uid, component_for(req.type, req.params), req.params)
    return out


def _check(
    name: str,
    workload: Workload,
    manifest: ComponentManifest,
    outputs: Mapping[str, Mapping[str, Any]],
    wanted: list[str],
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    for req in workload.resources.values():
        if req.type != manifest.provides:
            continue
        missing = [k for k in wanted if k not in outputs[req.name]]
        if missing:
            problems.append(
                error(
                    "Expected output missing",
                    f"Resource '{req.name}' did not get output(s) {', '.join(missing)}.",
                    file=name,
                )
            )
    data = {
        "metadata": workload.metadata.to_dict(),
        "resources": {k: reveal(v) for k, v in outputs.items()},
    }
    for cname, container in workload.containers.items():
        try:
            substitute(
                dict(container.variables),
                lambda ref: lookup(data, ref),
                location=f"containers.{cname}.variables",
            )
        except StackyardError as exc:
            problems.append(error("Workload placeholder unresolved", exc.message, file=name))
    return problems


def _fail(file: str, summary: str, detail: str) -> TestOutcome:
    return TestOutcome(file, False, (error(summary, detail, file=file),))


@contextmanager
def _throwaway_home() -> Iterator[Path]:
    """A temporary STACKYARD_HOME for the local cloud's servers and buckets, removed after."""
    previous = os.environ.get("STACKYARD_HOME")
    with tempfile.TemporaryDirectory(prefix="stackyard-ct-") as tmp:
        os.environ["STACKYARD_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if previous is None:
                os.environ.pop("STACKYARD_HOME", None)
            else:
                os.environ["STACKYARD_HOME"] = previous
