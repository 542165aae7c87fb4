"""Statuses are closed enums with one transition table each, the record layer refuses a move
that is not in it, and no status is spelled as a string literal outside ``model/status.py``."""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from _graphs import one_component_graph
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.errors import InvalidStatusError, InvalidTransitionError, StackyardError
from stackyard.model.environment import Deployment, Environment
from stackyard.model.status import (
    AUDIT,
    CHANGE,
    DEPLOYMENT,
    ENVIRONMENT,
    LIFECYCLES,
    WORKLOAD,
    AuditResult,
    ChangeOutcome,
    DecisionOutcome,
    DeploymentStatus,
    EnvironmentStatus,
    Lifecycle,
    Verdict,
    WorkloadState,
    parse,
    transition,
)
from stackyard.providers import noop
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph
from stackyard.runtime.spec import WorkloadStatus
from stackyard.state.records import Records
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore
from stackyard.state.tables import deployments, environments

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "stackyard"
E, D, W, C = EnvironmentStatus, DeploymentStatus, WorkloadState, ChangeOutcome


# -- the tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lifecycle", list(LIFECYCLES.values()), ids=lambda lc: lc.enum.__name__)
def test_every_member_has_an_entry_and_every_move_stays_in_the_enum(
    lifecycle: Lifecycle[Any],
) -> None:
    assert set(lifecycle.moves) == set(lifecycle.enum)
    assert lifecycle.initial, "a new record must be able to start somewhere"
    for old, new in lifecycle.moves.items():
        assert all(isinstance(s, lifecycle.enum) for s in new), old
        assert old not in new, f"{old}: writing the same status again is never a move"
    assert all(isinstance(s, lifecycle.enum) for s in lifecycle.initial)


@pytest.mark.parametrize("lifecycle", list(LIFECYCLES.values()), ids=lambda lc: lc.enum.__name__)
def test_every_status_is_reachable_from_a_new_record(lifecycle: Lifecycle[Any]) -> None:
    seen = set(lifecycle.initial)
    todo = list(seen)
    while todo:
        for nxt in lifecycle.moves[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(lifecycle.enum)


def test_values_are_the_strings_stored_and_printed_before() -> None:
    # Stored rows and JSON output stay byte-identical: the values are the old literals.
    assert [s.value for s in E] == [
        "declared",
        "creating",
        "ready",
        "failed",
        "destroying",
        "destroyed",
    ]
    assert {s.value for s in D} == {
        "running",
        "succeeded",
        "failed",
        "planned",
        "cancelled",
        "denied",
        "awaiting-approval",
        "approved",
        "rejected",
        "interrupted",
    }
    assert {s.value for s in W} == {"ready", "starting", "unready", "crashed", "stopped"}
    assert json.dumps({"s": D.AWAITING_APPROVAL}) == '{"s": "awaiting-approval"}'
    assert f"{E.READY}" == str(E.READY) == "ready"


def test_every_deployment_status_has_an_audit_result() -> None:
    assert AuditResult.of(D.SUCCEEDED) is AuditResult.OK
    for status in D:
        assert AuditResult.of(status) in AUDIT.initial


def test_finished_deployments_are_exactly_those_that_never_move() -> None:
    assert {s for s in D if s.is_finished} == {
        D.SUCCEEDED,
        D.FAILED,
        D.PLANNED,
        D.CANCELLED,
        D.DENIED,
        D.REJECTED,
    }


#: Every status change the code makes, with where it makes it (a change missing from its table
#: would be refused at run time).
USED = [
    (None, E.CREATING, "env create inserts the environment"),
    (E.DESTROYED, E.CREATING, "env create reuses a destroyed name"),
    (E.DECLARED, E.CREATING, "env create creates a declared environment"),
    (None, E.DECLARED, "platform apply records a declaration"),
    (E.DESTROYED, E.DECLARED, "platform apply declares a destroyed name"),
    (E.DECLARED, E.DESTROYED, "platform apply removes a declaration"),
    (E.CREATING, E.READY, "the core deployed"),
    (E.CREATING, E.FAILED, "the core failed"),
    (E.FAILED, E.CREATING, "env create retries a failed core"),
    (E.READY, E.DESTROYING, "env destroy / the reaper claims it"),
    (E.FAILED, E.DESTROYING, "env destroy / the reaper claims it"),
    (E.CREATING, E.DESTROYING, "env destroy of a create that stopped"),
    (E.DESTROYING, E.DESTROYING, "a stale reaper claim is taken over"),
    (E.DESTROYING, E.DESTROYED, "the destroy finished"),
    (E.DESTROYING, E.DECLARED, "the destroy of a declared environment finished"),
    (E.DESTROYING, E.FAILED, "the destroy failed"),
    (E.DESTROYING, E.READY, "the gate stopped a claimed destroy / the reaper skipped it"),
    (E.DESTROYING, E.CREATING, "the gate stopped a re-planned destroy of a creating one"),
    (E.READY, E.READY, "env extend"),
    (None, D.RUNNING, "a deploy starts applying"),
    (None, D.PLANNED, "a plan-only deploy"),
    (None, D.CANCELLED, "the confirmation was declined"),
    (None, D.DENIED, "the gate denied it"),
    (None, D.AWAITING_APPROVAL, "the gate parked it"),
    (None, D.SUCCEEDED, "a destroy records its end"),
    (None, D.FAILED, "a destroy records its end"),
    (D.RUNNING, D.SUCCEEDED, "applied"),
    (D.RUNNING, D.FAILED, "the apply failed"),
    (D.RUNNING, D.INTERRUPTED, "its writer is gone"),
    (D.INTERRUPTED, D.FAILED, "a writer declared gone reports its failure"),
    (D.AWAITING_APPROVAL, D.APPROVED, "approve"),
    (D.AWAITING_APPROVAL, D.REJECTED, "reject"),
    (D.APPROVED, D.RUNNING, "an approved deploy applies"),
    (D.APPROVED, D.AWAITING_APPROVAL, "its plan changed: parked again"),
    (D.APPROVED, D.DENIED, "re-evaluated and denied"),
    (D.APPROVED, D.SUCCEEDED, "an approved destroy finished"),
    (D.APPROVED, D.FAILED, "an approved destroy failed"),
    (None, W.STARTING, "a supervisor starts a container"),
    (W.STARTING, W.READY, "its readiness probe passed"),
    (W.READY, W.UNREADY, "its readiness probe fails"),
    (W.UNREADY, W.READY, "its readiness probe passes again"),
    (W.STARTING, W.CRASHED, "it exited"),
    (W.READY, W.CRASHED, "it exited, or failed its liveness probe"),
    (W.CRASHED, W.STARTING, "restarted after its back-off"),
    (W.READY, W.STOPPED, "the supervisor stopped"),
    (None, C.STARTED, "a change starts"),
    (C.STARTED, C.RETRYING, "a transient failure"),
    (C.RETRYING, C.FINISHED, "the retry succeeded"),
    (C.STARTED, C.FINISHED, "done"),
    (C.STARTED, C.FAILED, "the provider failed"),
    (None, C.FAILED, "the config could not be resolved"),
    (None, C.SKIPPED, "a dependency did not succeed"),
]


@pytest.mark.parametrize(("old", "new", "reason"), USED, ids=[r for _, _, r in USED])
def test_the_transitions_the_code_makes_are_in_the_tables(
    old: StrEnum | None, new: StrEnum, reason: str
) -> None:
    assert transition(old, new) is new


REFUSED = [
    (E.READY, E.CREATING, "a ready environment is never created again"),
    (E.DESTROYED, E.READY, "a destroyed environment comes back only through create"),
    (E.DECLARED, E.READY, "a declared environment is created first"),
    (D.SUCCEEDED, D.RUNNING, "a finished deployment never runs again"),
    (D.REJECTED, D.APPROVED, "a rejection is final"),
    (D.RUNNING, D.AWAITING_APPROVAL, "the gate decides before anything runs"),
    (None, D.APPROVED, "only a parked deployment is approved"),
    (W.STOPPED, W.STARTING, "a stopped supervisor starts nothing"),
    (C.FINISHED, C.FAILED, "a finished change does not fail afterwards"),
    (None, E.READY, "a new environment is created or declared first"),
]


@pytest.mark.parametrize(("old", "new", "reason"), REFUSED, ids=[r for _, _, r in REFUSED])
def test_a_transition_outside_the_table_is_refused(
    old: StrEnum | None, new: StrEnum, reason: str
) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        transition(old, new, subject="x")
    assert isinstance(info.value, StackyardError)
    assert info.value.exit_code == 1  # an internal error: the caller has a bug


def test_a_transition_between_two_vocabularies_is_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        transition(W.READY, E.READY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("enum", "value"),
    [(EnvironmentStatus, "expired"), (DeploymentStatus, "Running"), (Verdict, None)],
    ids=["an unknown word", "another case", "not a string"],
)
def test_an_unknown_value_is_a_clear_error(enum: type[StrEnum], value: Any) -> None:
    with pytest.raises(InvalidStatusError, match=f"Unknown {enum.__name__} '{value}'"):
        parse(enum, value, subject="row 1")


def test_records_built_from_strings_hold_members() -> None:
    env = Environment(name="a", type="t", status="ready")  # type: ignore[arg-type]
    assert env.status is E.READY and env.live
    dep = Deployment.start(env="a", kind="deploy", actor="me").finished("failed")  # type: ignore[arg-type]
    assert dep.status is D.FAILED
    with pytest.raises(InvalidStatusError):
        Environment(name="a", type="t", status="expired")  # type: ignore[arg-type]


def test_a_runtime_status_reads_back_as_a_member() -> None:
    raw = WorkloadStatus("web", W.READY, {}, 0, {}, "", None).to_json()
    assert raw["state"] == "ready"
    assert WorkloadStatus.from_json(json.loads(json.dumps(raw))).state is W.READY
    with pytest.raises(InvalidStatusError):
        WorkloadStatus.from_json({**raw, "state": "sleeping"})
    assert WORKLOAD.initial == {W.STARTING}


# -- the record layer, against real stores -------------------------------------------------------


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Records]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        pg_databases: Callable[[], str] = request.getfixturevalue("pg_databases")
        url = pg_databases()
    store = SqlStateStore(url, SecretBox(SecretBox.generate_key()))
    try:
        yield Records(store)
    finally:
        store.close()


def _name() -> str:
    return f"env-{uuid.uuid4().hex[:8]}"


def test_an_environment_moves_only_as_its_table_allows(records: Records) -> None:
    name = _name()
    assert records.insert_environment(Environment(name=name, type="t", status=E.CREATING))
    assert records.set_status(name, E.READY, expect=[E.CREATING])
    with pytest.raises(InvalidTransitionError, match="'ready' -> 'creating'"):
        records.set_status(name, E.CREATING)
    with pytest.raises(InvalidTransitionError):
        records.put_environment(Environment(name=name, type="t", status=E.DECLARED))
    found = records.environment(name)
    assert found is not None and found.status is E.READY  # nothing was written
    assert not records.set_status(name, E.DESTROYING, expect=[E.FAILED])  # not from there
    assert records.set_status(name, E.DESTROYING)
    assert records.set_status(name, E.DESTROYED)
    assert [e.status for e in records.environments(include_destroyed=True)] == [E.DESTROYED]


def test_a_new_environment_starts_creating_or_declared(records: Records) -> None:
    with pytest.raises(InvalidTransitionError):
        records.insert_environment(Environment(name=_name(), type="t", status=E.READY))
    assert records.environments(include_destroyed=True) == []


def test_a_deployment_moves_only_as_its_table_allows(records: Records) -> None:
    name = _name()
    dep = Deployment.start(env=name, kind="deploy", actor="me")
    records.put_deployment(dep)
    records.put_deployment(dep.finished(D.SUCCEEDED))
    with pytest.raises(InvalidTransitionError, match="'succeeded' -> 'running'"):
        records.put_deployment(dep)
    with pytest.raises(InvalidTransitionError):
        records.move_deployment(dep.id, expect=D.SUCCEEDED, status=D.APPROVED)
    with pytest.raises(InvalidTransitionError):
        records.put_deployment(
            Deployment.start(env=name, kind="deploy", actor="me").finished(D.APPROVED)
        )
    found = records.deployment(dep.id)
    assert found is not None and found.status is D.SUCCEEDED
    assert [d.id for d in records.deployments(name)] == [dep.id]


@pytest.mark.integration
def test_two_writers_of_one_deployment_on_postgresql_cannot_skip_the_table(
    pg_databases: Callable[[], str],
) -> None:
    """Under READ COMMITTED a writer used to check its move against the status it read, then
    overwrite a status another transaction committed meanwhile ('failed' -> 'interrupted'):
    the read now locks the row, so the move is checked against what it replaces."""
    import threading
    import time

    url = pg_databases()
    store = SqlStateStore(url, SecretBox(SecretBox.generate_key()))
    other = sa.create_engine(url)
    try:
        records = Records(store)
        dep = Deployment.start(env=_name(), kind="deploy", actor="me")
        records.put_deployment(dep)
        raised: list[BaseException] = []

        def late_writer() -> None:
            try:
                records.put_deployment(dep.finished(D.INTERRUPTED))
            except BaseException as exc:
                raised.append(exc)

        with other.connect() as conn:
            conn.execute(
                sa.select(deployments.c.status).where(deployments.c.id == dep.id).with_for_update()
            )
            writer = threading.Thread(target=late_writer)
            writer.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the late writer waits on the row lock
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                if waiting:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the late writer never waited for the row")
            conn.execute(
                sa.update(deployments).where(deployments.c.id == dep.id).values(status="failed")
            )
            conn.commit()
        writer.join(10)
        assert raised and isinstance(raised[0], InvalidTransitionError), raised
        found = records.deployment(dep.id)
        assert found is not None and found.status is D.FAILED
    finally:
        other.dispose()
        store.close()


def test_approval_and_interruption_are_moves_of_the_table(records: Records) -> None:
    name = _name()
    parked = Deployment.start(env=name, kind="deploy", actor="me")
    records.put_deployment(parked.finished(D.AWAITING_APPROVAL))
    assert records.move_deployment(parked.id, expect=D.AWAITING_APPROVAL, status=D.APPROVED)
    assert not records.move_deployment(parked.id, expect=D.AWAITING_APPROVAL, status=D.REJECTED)
    running = Deployment.start(env=name, kind="deploy", actor="me")
    records.put_deployment(running)
    with records.store.reading() as conn:  # stored as the very strings stored before
        raw = conn.execute(sa.select(deployments.c.status).where(deployments.c.id == parked.id))
        assert raw.scalar_one() == "approved"
    assert records.interrupt_running(name) == [running.id]
    records.put_deployment(running.finished(D.FAILED))  # its slow writer reports its end
    statuses = {d.id: d.status for d in records.deployments(name)}
    assert statuses == {parked.id: D.APPROVED, running.id: D.FAILED}


def test_an_unknown_stored_status_is_a_clear_error(records: Records) -> None:
    name = _name()
    records.insert_environment(Environment(name=name, type="t", status=E.CREATING))
    dep = Deployment.start(env=name, kind="deploy", actor="me")
    records.put_deployment(dep)
    with records.store.writing() as conn:
        conn.execute(sa.update(environments).values(status="expired"))
        conn.execute(sa.update(deployments).values(status="paused"))
    with pytest.raises(
        InvalidStatusError, match=f"Unknown EnvironmentStatus 'expired' of environment '{name}'"
    ):
        records.environment(name)
    with pytest.raises(
        InvalidStatusError, match=f"Unknown DeploymentStatus 'paused' of deployment {dep.id}"
    ):
        records.deployment(dep.id)
    with pytest.raises(InvalidStatusError):  # and never moved from an unknown status
        records.set_status(name, E.READY)


# -- the engine: each change's events follow the change table --------------------------------------


def _graph(ledger: Path, env: str) -> Graph:
    def res(extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("noop.resource", {"ledger": str(ledger), **extra})

    return one_component_graph(
        {
            "blip": res({"fail": {"create": "transient"}}),
            "ok": res({"peer": "${resources.blip.id}"}),
            "broken": res({"fail": {"create": "always"}}),
            "after": res({"peer": "${resources.broken.id}"}),
        },
        env=env,
    )


def test_each_change_of_an_apply_follows_the_change_table(tmp_path: Path) -> None:
    seen: list[Event] = []
    store = SqlStateStore(f"sqlite:///{tmp_path}/state.db", SecretBox.from_home(tmp_path))
    try:
        engine = Engine(
            store=store,
            kinds=ProviderRegistry.from_providers([noop.PROVIDER]),
            events=Events(seen.append),
            retry_delay_s=0.0,
        )
        _, result = engine.converge("env", _graph(tmp_path / "ledger.jsonl", "env"))
    finally:
        store.close()
    assert result is not None and not result.ok
    by_address: dict[str, list[ChangeOutcome]] = {}
    for e in seen:
        if e.type in {c.value for c in ChangeOutcome}:
            by_address.setdefault(e.address, []).append(CHANGE.parse(e.type))
    last = {}
    for address, outcomes in by_address.items():
        old = None
        for new in outcomes:
            old = CHANGE.check(old, new, subject=address)
        last[address.rsplit("/", 1)[-1]] = old
        assert not CHANGE.moves[outcomes[-1]], f"{address} ended in {outcomes[-1]}"
    assert last == {"blip": C.FINISHED, "ok": C.FINISHED, "broken": C.FAILED, "after": C.SKIPPED}
    assert C.RETRYING in by_address[next(a for a in by_address if a.endswith("/blip"))]


# -- no status literal outside model/status.py ---------------------------------------------------

#: The name a status is known by in the code, and the vocabulary it takes its values from.
VOCABULARY: dict[str, frozenset[str]] = {
    "status": frozenset({*E, *D}),
    "state": frozenset(W),
    "states": frozenset(W),
    "result": frozenset(AuditResult),
    "outcome": frozenset(DecisionOutcome),
    "verdict": frozenset(Verdict),
    "type": frozenset(ChangeOutcome),  # an engine event's type
    "expect": frozenset({*E, *D}),
}
#: Calls whose positional argument at an index is a status: (method name, index) → vocabulary.
POSITIONAL = {
    ("set_status", 1): "status",
    ("finished", 0): "status",
    ("_finish", 1): "status",
    ("audit", 2): "result",
    ("emit", 0): "type",
    ("WorkloadStatus", 1): "state",
}


def _known_as(node: ast.AST) -> str | None:
    """The name a compared expression is known by: ``x.status``, ``status``, ``r["status"]``,
    ``d.get("status")``, ``environments.c.status``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "pop")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    return None


def _literals(node: ast.AST) -> Iterator[ast.Constant]:
    """String constants a value is made of: itself, a container's items, a conditional's arms."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for item in node.elts:
            yield from _literals(item)
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from _literals(value)


def _vocabulary_of(node: ast.AST) -> str | None:
    name = _known_as(node)
    return name if name in VOCABULARY else None


def status_literals(tree: ast.AST) -> Iterator[tuple[int, int, str, str]]:
    """``(line, column, literal, vocabulary)`` for each status spelled as a string where a status is
    compared, passed, assigned or defaulted."""

    def hits(
        values: Iterator[ast.Constant], vocabulary: str | None
    ) -> Iterator[tuple[int, int, str, str]]:
        if vocabulary is None:
            return
        for c in values:
            if c.value in VOCABULARY[vocabulary]:
                yield c.lineno, c.col_offset, c.value, vocabulary

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for side in sides:
                for other in sides:
                    if other is not side:
                        yield from hits(_literals(side), _vocabulary_of(other))
        elif isinstance(node, ast.IfExp):  # "ok" if ... else dep.status
            for arm, other in ((node.body, node.orelse), (node.orelse, node.body)):
                yield from hits(_literals(arm), _vocabulary_of(other))
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in VOCABULARY:
                    yield from hits(_literals(kw.value), kw.arg)
            func = node.func
            method = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            for i, arg in enumerate(node.args):
                yield from hits(_literals(arg), POSITIONAL.get((method, i)))
            if isinstance(func, ast.Attribute) and func.attr in ("in_", "not_in", "pop", "get"):
                target = func.value if func.attr in ("in_", "not_in") else node
                args = node.args if func.attr in ("in_", "not_in") else node.args[1:]
                for arg in args:
                    yield from hits(_literals(arg), _vocabulary_of(target))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in VOCABULARY:
                    yield from hits(_literals(value), str(key.value))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None:
                for target in targets:
                    yield from hits(_literals(node.value), _vocabulary_of(target))
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs = [
                *zip(
                    positional[len(positional) - len(node.defaults) :], node.defaults, strict=True
                ),
                *((a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d),
            ]
            for arg, default in pairs:
                if arg.arg in VOCABULARY and default is not None:
                    yield from hits(_literals(default), arg.arg)


def literal_sites(root: Path) -> list[str]:
    """Every status literal under ``root`` (a ``src/stackyard`` tree), as ``file:line``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "model/status.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, _, value, vocabulary in sorted(set(status_literals(tree))):
            found.append(f"{rel}:{line}: {value!r} as a {vocabulary}")
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('if env.status == "ready": pass', ["ready"]),
        ('ok = dep.status in ("succeeded", "failed")', ["succeeded", "failed"]),
        ('records.set_status(name, "creating", expect=["failed"])', ["creating", "failed"]),
        ('q.where(environments.c.status.in_(["ready", "failed"]))', ["ready", "failed"]),
        ('x = {"state": "stopped", "ready": st.state == "ready"}', ["stopped", "ready"]),
        ('d = {"result": "ok" if dep.status == "succeeded" else dep.status}', ["ok", "succeeded"]),
        ('before = "ready" if claimed else env.status', ["ready"]),
        ('ws.audit(action, target, "denied" if denied else "failed", {})', ["denied", "failed"]),
        ('def gate(*, status: str = "ready") -> None: pass', ["ready"]),
        ('self.state = "starting"', ["starting"]),
        ('if "crashed" in states: pass', ["crashed"]),
        ('st = WorkloadStatus(name, "starting", {}, 0, {}, "", None)', ["starting"]),
        ('extra.pop("result", "ok")', ["ok"]),
        ('events.emit("failed", address)', ["failed"]),
        ('if e.type in ("finished", "planned"): pass', ["finished"]),
        ('summary = {"failed": 2, "ok": True}', []),
        ('if d.severity == "error": pass', []),
        ('if r["health"] == "ok": pass', []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_literal_finder(source: str, expected: list[str]) -> None:
    found = {(line, col, v) for line, col, v, _ in status_literals(ast.parse(source))}
    assert sorted(v for _, _, v in found) == sorted(expected)


def test_no_status_is_spelled_as_a_string_literal() -> None:
    sites = literal_sites(SRC)
    assert sites == [], "use the enums of stackyard.model.status:\n" + "\n".join(sites)


def test_the_deployment_and_environment_tables_are_what_the_records_check() -> None:
    assert LIFECYCLES[EnvironmentStatus] is ENVIRONMENT
    assert LIFECYCLES[DeploymentStatus] is DEPLOYMENT
