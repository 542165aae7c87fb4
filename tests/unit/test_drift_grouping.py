"""Drift findings are grouped by root cause along the recorded ``depends_on`` edges."""

from __future__ import annotations

import pytest

from stackyard.environments.drift import Drifted, _group
from stackyard.state.api import ResourceRecord

pytestmark = pytest.mark.unit


def _records(*rows: tuple[str, tuple[str, ...]]) -> dict[str, ResourceRecord]:
    return {a: ResourceRecord(a, "k", a, a, {}, {}, depends_on=d) for a, d in rows}


def test_a_stopped_server_is_one_finding_with_its_transitive_dependents() -> None:
    recs = _records(
        ("srv", ()), ("pw", ()), ("role", ("srv", "pw")), ("db", ("role",)), ("other", ())
    )
    items = {
        "srv": Drifted("srv", "k", "stopped"),
        "role": Drifted("role", "k", "unreachable"),
        "db": Drifted("db", "k", "unreachable"),
        "other": Drifted("other", "k", "changed", ({"field": "x", "recorded": 1, "observed": 2},)),
    }
    findings = _group("dev", recs, items)
    assert [(f.root.address, [d.address for d in f.dependents]) for f in findings] == [
        ("srv", ["db", "role"]),
        ("other", []),
    ]
    assert "2 resource(s) on it" in findings[0].why


def test_a_changed_resource_is_never_a_root_of_others() -> None:
    recs = _records(("role", ()), ("grant", ("role",)))
    items = {
        "role": Drifted("role", "k", "changed", ({"field": "x", "recorded": 1, "observed": 2},)),
        "grant": Drifted("grant", "k", "missing"),
    }
    assert sorted(f.root.address for f in _group("dev", recs, items)) == ["grant", "role"]


def test_the_top_most_root_wins() -> None:
    recs = _records(("srv", ()), ("db", ("srv",)), ("grant", ("db",)))
    items = {
        "srv": Drifted("srv", "k", "stopped"),
        "db": Drifted("db", "k", "missing"),
        "grant": Drifted("grant", "k", "missing"),
    }
    (finding,) = _group("dev", recs, items)
    assert finding.root.address == "srv"
    assert [d.address for d in finding.dependents] == ["db", "grant"]
