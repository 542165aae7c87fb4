"""Platform documents: parsing, diagnostics with paths, durations, binding ties and diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.environments.platform import diff, digest, load_dir
from stackyard.errors import InvalidInputError
from stackyard.model.platform import (
    Binding,
    EnvironmentType,
    binding_ties,
    format_duration,
    parse_document,
    parse_duration,
)

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "platform"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("4h", 14400), ("2d", 172800), ("1d12h", 129600), ("1h30m", 5400)],
    ids=["minutes", "hours", "days", "days-hours", "hours-minutes"],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "4", "4x", "0h", "-1h", "h", "4h 30m"], ids=str)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_the_example_platform_loads() -> None:
    docs = load_dir(EXAMPLES)
    kinds = {(d.kind, d.name) for d in docs}
    assert {
        ("EnvironmentType", t) for t in ("development", "ephemeral", "staging", "production")
    } <= kinds
    assert ("PromotionPath", "default") in kinds
    eph = next(d.value for d in docs if d.name == "ephemeral")
    assert isinstance(eph, EnvironmentType)
    assert eph.ttl_default_s == 4 * 3600 and eph.ttl_max_s == 72 * 3600
    assert [c.type for c in eph.core] == ["postgres-instance", "redis-instance"]


def _doc(kind: str, spec: object) -> dict:
    return {"apiVersion": "stackyard.dev/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize(
    ("data", "summary", "path"),
    [
        (_doc("Widget", {}), "Unknown kind", "kind"),
        ({**_doc("Team", {}), "apiVersion": "v0"}, "Unsupported apiVersion", "apiVersion"),
        (_doc("EnvironmentType", {"runtime": "k8s"}), "Unknown runtime", "spec.runtime"),
        (
            _doc("EnvironmentType", {"ttl": {"default": "9h", "maximum": "4h"}}),
            "Invalid value",
            "spec.ttl",
        ),
        (
            _doc("EnvironmentType", {"ttl": {"default": "soon"}}),
            "Invalid duration",
            "spec.ttl.default",
        ),
        (
            _doc("EnvironmentType", {"bindings": [{"type": "postgres"}]}),
            "Missing field",
            "spec.bindings[0].component",
        ),
        (
            _doc("EnvironmentType", {"bindings": [{"type": "pg", "component": "db@not-a-range"}]}),
            "Invalid version range",
            "spec.bindings[0].component",
        ),
        (
            _doc(
                "EnvironmentType", {"bindings": [{"type": "pg", "component": "db@1", "colour": 1}]}
            ),
            "Unknown field",
            "spec.bindings[0].colour",
        ),
        (_doc("Environment", {}), "Missing field", "spec.type"),
        (_doc("PromotionPath", {"stages": ["dev"]}), "Invalid value", "spec.stages"),
        (_doc("PromotionPath", {"stages": ["dev", "dev"]}), "Invalid value", "spec.stages"),
        (_doc("Team", {"members": "ann"}), "Wrong type", "spec.members"),
    ],
    ids=[
        "kind",
        "api-version",
        "runtime",
        "ttl-order",
        "ttl-format",
        "binding-component",
        "binding-range",
        "binding-field",
        "env-type",
        "short-path",
        "repeated-stage",
        "members",
    ],
)
def test_document_diagnostics_name_the_path(data: dict, summary: str, path: str) -> None:
    doc, diags = parse_document(data, file="p.yaml")
    assert doc is None
    assert (summary, path) in {(d.summary, d.path) for d in diags}, [
        (d.summary, d.path) for d in diags
    ]


def test_ties_are_same_selector_at_one_level() -> None:
    a = Binding("postgres", "postgres-database", "^1")
    b = Binding("postgres", "other", "^1")
    c = Binding("postgres", "other", "^1", klass="large")
    assert binding_ties([a, b, c]) == [(a, b)]


def test_load_dir_collects_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: stackyard.dev/v1\nkind: Team\nmetadata: {name: t}\nspec: {}\n---\n: bad: yaml\n"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: stackyard.dev/v1\nkind: Team\nmetadata: {name: t}\nspec: {}\n"
    )
    with pytest.raises(InvalidInputError) as err:
        load_dir(tmp_path)
    summaries = [d.summary for d in err.value.diagnostics]
    assert "Duplicate document" in summaries and len(summaries) >= 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="No YAML documents"):
        load_dir(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="is not a directory"):
        load_dir(tmp_path / "missing")


def test_diff_reports_creates_updates_deletes() -> None:
    docs = load_dir(EXAMPLES)
    stored = [(d.kind, d.name, d.spec, digest(d.spec)) for d in docs]
    assert {c.action for c in diff(stored, docs)} == {"unchanged"}
    changed = [
        (
            k,
            n,
            {**s, "description": "new"} if n == "staging" and k == "EnvironmentType" else s,
            digest({**s, "description": "new"})
            if n == "staging" and k == "EnvironmentType"
            else dg,
        )
        for k, n, s, dg in stored
    ]
    changes = {(c.kind, c.name): c for c in diff(changed, docs)}
    assert changes[("EnvironmentType", "staging")].action == "update"
    assert changes[("EnvironmentType", "staging")].fields == ("description",)
    extra = [*stored, ("Team", "gone", {}, digest({}))]
    assert ("delete", "gone") in {(c.action, c.name) for c in diff(extra, docs)}
