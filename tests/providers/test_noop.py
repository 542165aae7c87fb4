"""Table tests of the noop provider and its ledger: ledger state + desired config → outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    sensitive_fields,
    validate_config,
)
from stackyard.providers.noop import LEDGER_ENV, PROVIDER, Ledger

pytestmark = pytest.mark.providers

KIND = PROVIDER.kind("noop.resource")
ADDRESS = "noop.default#app.thing/res"
NAME = "dev-app-thing-res-0123abcd"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    return Ledger(path)


def meta(name: str = NAME, address: str = ADDRESS) -> ResourceMeta:
    return ResourceMeta(address=address, kind=KIND.name, env="dev", physical_name=name)


def cfg(**config: Any) -> dict[str, Any]:
    return validate_config(KIND, config)


def create(name: str = NAME, address: str = ADDRESS, **config: Any) -> dict[str, Any]:
    return dict(KIND.create(CreateRequest(meta(name, address), cfg(**config))).outputs)


def ops(ledger: Ledger) -> list[str]:
    return [e["op"] for e in ledger.entries()]


# -- observe: ledger state + desired → observed ------------------------------------------------

OBSERVE_CASES = [
    # (setup, expected: None | (observed config subset, managed), reason)
    ("empty", None, "nothing in the ledger: missing"),
    ("created", ({"size": 1}, True), "created by us: observed with its config"),
    ("drift-deleted", None, "deleted out of band: missing"),
    ("drift-changed", ({"size": 5}, True), "changed out of band: the new value is observed"),
    ("other-owner", ({"size": 1}, False), "created under another address: unmanaged"),
    ("deleted", None, "deleted by us: missing"),
]


@pytest.mark.parametrize(
    ("setup", "expected", "reason"), OBSERVE_CASES, ids=[c[-1] for c in OBSERVE_CASES]
)
def test_observe(ledger: Ledger, setup: str, expected: Any, reason: str) -> None:
    if setup != "empty":
        owner = "other#x/y" if setup == "other-owner" else ADDRESS
        create(address=owner, size=1)
    if setup == "drift-deleted":
        ledger.drift_delete(NAME)
    elif setup == "drift-changed":
        ledger.drift_change(NAME, size=5)
    elif setup == "deleted":
        KIND.delete(DeleteRequest(meta(), cfg(size=1), {}))
    observed = KIND.observe(ObserveRequest(meta(), cfg(size=1)))
    if expected is None:
        assert observed is None, reason
        return
    assert observed is not None, reason
    subset, managed = expected
    assert {k: observed.config[k] for k in subset} == subset, reason
    assert observed.managed is managed, reason
    assert observed.outputs["id"], reason


# -- create / update / delete: ledger state + desired → lines appended -------------------------

APPLY_CASES = [
    # (prior ledger state, operation, config, expected appended ops, reason)
    ("empty", "create", {"size": 1}, ["create"], "a new name: one create line"),
    ("live", "create", {"size": 1}, [], "idempotent create: live with our address, no line"),
    ("live", "create", {"size": 2}, ["update"], "a repeat create with new config converges"),
    ("live", "update", {"size": 2}, ["update"], "a real change: one update line"),
    ("live", "update", {"size": 1}, [], "an update that changes nothing appends nothing"),
    ("live", "update", {"size": 1, "latency_ms": 1}, [], "control keys are not the object's"),
    ("live", "delete", {"size": 1}, ["delete"], "a live object: one delete line"),
    ("empty", "delete", {"size": 1}, [], "deleting a missing object succeeds, no line"),
    ("drift-deleted", "create", {"size": 1}, ["create"], "recreate after an out-of-band delete"),
]


@pytest.mark.parametrize(
    ("prior", "op", "config", "appended", "reason"),
    APPLY_CASES,
    ids=[c[-1] for c in APPLY_CASES],
)
def test_apply(
    ledger: Ledger, prior: str, op: str, config: dict[str, Any], appended: list[str], reason: str
) -> None:
    if prior != "empty":
        create(size=1)
    if prior == "drift-deleted":
        ledger.drift_delete(NAME)
    before = len(ledger.entries())
    c = cfg(**config)
    if op == "create":
        KIND.create(CreateRequest(meta(), c))
    elif op == "update":
        KIND.update(UpdateRequest(meta(), c, cfg(size=1), {}, frozenset()))
    else:
        KIND.delete(DeleteRequest(meta(), c, {}))
    assert ops(ledger)[before:] == appended, reason
    assert ledger.duplicates() == [], reason


def test_create_outputs_echo_config_and_id(ledger: Ledger) -> None:
    out = create(size=3, secret="s3cr3t", latency_ms=0, extra={"a": [1]})
    assert out["size"] == 3 and out["secret"] == "s3cr3t" and out["extra"] == {"a": [1]}
    assert out["id"] and "latency_ms" not in out and "fail" not in out and "ledger" not in out
    again = create(size=3, secret="s3cr3t", extra={"a": [1]})
    assert again["id"] == out["id"]
    line = ledger.entries()[0]
    assert set(line) >= {"ts", "op", "name", "address", "config", "pid", "id"}
    assert line["name"] == NAME and line["address"] == ADDRESS and line["pid"] == os.getpid()


def test_create_refuses_a_name_owned_by_another_address(ledger: Ledger) -> None:
    create(address="other#x/y")
    with pytest.raises(ProviderPermanentError, match="belongs to other#x/y"):
        create()
    with pytest.raises(ProviderPermanentError, match="refusing to delete"):
        KIND.delete(DeleteRequest(meta(), cfg(), {}))


def test_update_of_a_missing_object_is_permanent(ledger: Ledger) -> None:
    with pytest.raises(ProviderPermanentError, match="does not exist"):
        KIND.update(UpdateRequest(meta(), cfg(size=2), cfg(size=1), {}, frozenset({"size"})))


def test_sensitive_secret() -> None:
    assert sensitive_fields(KIND.config_model) == {"secret"}
    assert KIND.sensitive_outputs == {"secret"}


def test_ledger_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    with pytest.raises(
        ProviderPermanentError, match=f"'ledger' or the environment variable {LEDGER_ENV}"
    ):
        KIND.observe(ObserveRequest(meta(), cfg()))


def test_config_key_ledger_wins_over_environment(ledger: Ledger, tmp_path: Path) -> None:
    own = tmp_path / "own.jsonl"
    create(ledger=str(own))
    assert Ledger(own).live().keys() == {NAME}
    assert ledger.entries() == []


# -- the failure schedule ------------------------------------------------------------------------

FAIL_CASES = [
    # (fail config, extra keys, attempts, expected outcome per attempt, reason)
    ({"create": "never"}, {}, 2, ["ok", "ok"], "never fails"),
    ({"create": "always"}, {}, 3, ["perm", "perm", "perm"], "always fails, permanently"),
    ({"create": 2}, {}, 3, ["perm", "perm", "ok"], "the first N attempts fail"),
    ({"create": 2}, {"fail_transient": True}, 3, ["trans", "trans", "ok"], "N, transient"),
    ({"create": "transient"}, {}, 2, ["trans", "ok"], "one transient blip"),
    ({"create": 0}, {}, 1, ["ok"], "zero failures"),
    ({"update": "always"}, {}, 1, ["ok"], "a schedule for update leaves create alone"),
]


@pytest.mark.parametrize(
    ("fail", "extra", "attempts", "outcomes", "reason"),
    FAIL_CASES,
    ids=[c[-1] for c in FAIL_CASES],
)
def test_failure_schedule(
    ledger: Ledger,
    fail: dict[str, Any],
    extra: dict[str, Any],
    attempts: int,
    outcomes: list[str],
    reason: str,
) -> None:
    seen = []
    for _ in range(attempts):
        try:
            create(fail=fail, **extra)
            seen.append("ok")
        except ProviderTransientError:
            seen.append("trans")
        except ProviderPermanentError:
            seen.append("perm")
    assert seen == outcomes, reason
    assert ops(ledger).count("attempt-failed") == outcomes.count("perm") + outcomes.count("trans")
    assert ops(ledger).count("create") == (1 if "ok" in outcomes else 0), reason


def test_failure_counts_are_per_name(ledger: Ledger) -> None:
    with pytest.raises(ProviderPermanentError):
        create(name="a", fail={"create": 1})
    create(name="a", fail={"create": 1})
    with pytest.raises(ProviderPermanentError):
        create(name="b", fail={"create": 1})
    assert ledger.failed_attempts("a", "create") == 1
    assert ledger.failed_attempts("b", "create") == 1


def test_fail_after_apply_then_retry_converges_without_duplicate(ledger: Ledger) -> None:
    with pytest.raises(ProviderTransientError):
        create(fail={"create": 1}, fail_transient=True, fail_after_apply=True)
    assert ledger.live().keys() == {NAME}, "the change took effect although the call failed"
    create(fail={"create": 1}, fail_transient=True, fail_after_apply=True)
    assert ops(ledger) == ["create", "attempt-failed"]
    assert ledger.duplicates() == []


def test_observe_failure_and_latency(ledger: Ledger) -> None:
    with pytest.raises(ProviderTransientError):
        KIND.observe(ObserveRequest(meta(), cfg(fail={"observe": "transient"})))
    assert KIND.observe(ObserveRequest(meta(), cfg(fail={"observe": "transient"}))) is None
    start = time.monotonic()
    KIND.observe(ObserveRequest(meta(), cfg(observe_latency_ms=50)))
    assert time.monotonic() - start >= 0.045


def test_bad_schedule_is_refused() -> None:
    for bad in ({"create": "sometimes"}, {"create": -1}, {"explode": "always"}):
        with pytest.raises(ProviderPermanentError):
            cfg(fail=bad)


# -- the ledger helpers --------------------------------------------------------------------------


def test_drift_helpers_and_orphans(ledger: Ledger) -> None:
    create(name="a", size=1)
    create(name="b", size=1)
    ledger.drift_change("a", size=9, colour="red")
    ledger.drift_delete("b")
    assert ledger.live() == {"a": {"size": 9, "colour": "red", "secret": None}}
    assert ledger.orphans({"b"}) == ["a"]
    assert ledger.orphans({"a"}) == []
    assert ops(ledger)[-2:] == ["drift-update", "drift-delete"]
    with pytest.raises(KeyError):
        ledger.drift_delete("b")
    with pytest.raises(KeyError):
        ledger.drift_change("zzz", size=1)


def test_duplicates_counts_each_create_of_a_live_name(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    lines = [
        {"op": "create", "name": "x", "address": "a", "config": {}, "id": "1"},
        {"op": "create", "name": "x", "address": "a", "config": {}, "id": "2"},
        {"op": "create", "name": "x", "address": "a", "config": {}, "id": "3"},
        {"op": "delete", "name": "x"},
        {"op": "create", "name": "x", "address": "a", "config": {}, "id": "4"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert Ledger(path).duplicates() == ["x", "x"]


def test_cache_reads_only_whole_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = Ledger(path)
    assert ledger.live() == {}
    line = json.dumps({"op": "create", "name": "x", "address": "a", "config": {}, "id": "1"})
    with path.open("a") as fh:
        fh.write(line[:10])  # a writer in the middle of its line
    assert ledger.live() == {}
    with path.open("a") as fh:
        fh.write(line[10:] + "\n")
    assert ledger.live() == {"x": {}}
    path.unlink()  # a new file is replayed from scratch
    path.write_text("")
    assert ledger.live() == {}


WORKER = textwrap.dedent(
    """
    import sys
    from stackyard.providers.api import CreateRequest, ResourceMeta
    from stackyard.providers.noop import PROVIDER

    worker, count, shared = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "shared"
    kind = PROVIDER.kind("noop.resource")
    for i in range(count):
        name = f"n-{i}" if shared else f"w{worker}-{i}"
        kind.create(CreateRequest(ResourceMeta("addr#" + name, kind.name, "dev", name), {"n": 0}))
    """
)


def _run_workers(ledger: Ledger, workers: int, count: int, mode: str) -> None:
    env = {**os.environ, LEDGER_ENV: str(ledger.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(w), str(count), mode], env=env)
        for w in range(workers)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0] * workers


def test_multi_process_appends_are_whole_lines(ledger: Ledger) -> None:
    _run_workers(ledger, 8, 200, "distinct")
    raw = ledger.path.read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 1601
    entries = [json.loads(line) for line in lines[:-1]]
    assert {e["op"] for e in entries} == {"create"}
    assert len({e["name"] for e in entries}) == 1600
    assert len({e["pid"] for e in entries}) == 8
    assert ledger.duplicates() == []


def test_racing_creates_of_the_same_names_never_duplicate(ledger: Ledger) -> None:
    _run_workers(ledger, 6, 50, "shared")
    assert ops(ledger) == ["create"] * 50
    assert ledger.duplicates() == []
    assert sorted(ledger.live()) == sorted(f"n-{i}" for i in range(50))
