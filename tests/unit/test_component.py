"""Component manifests: loading, structure checks, params (inputs) and ``component validate``."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackyard.diagnostics import Severity, has_errors
from stackyard.errors import InvalidInputError
from stackyard.model.component import (
    ComponentManifest,
    apply_inputs,
    load_component,
    manifest_from_data,
    validate_component,
)
from stackyard.model.component_schema import check_structure

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "components" / "postgres-database"
CORPUS = TESTS / "corpus" / "component"


def _data() -> dict[str, Any]:
    data = yaml.safe_load((FIXTURE / "component.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: Any) -> Path:
    (tmp_path / "component.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


# -- loading --------------------------------------------------------------------------------


def test_fixture_loads_with_every_field() -> None:
    m = load_component(FIXTURE)
    assert m.ref == "postgres-database@1.4.2"
    assert (m.owner, m.lifecycle, m.provides, m.deletion) == (
        "team-data",
        "production",
        "postgres",
        "delete",
    )
    assert m.labels == {"tier": "gold"}
    assert list(m.resources) == ["password", "role", "database", "extension"]
    assert m.resources["extension"].for_each == "${inputs.extensions}"
    assert m.resources["role"].kind == "postgres.role"
    assert m.requires["server"].type == "postgres-instance"
    assert m.outputs["password"].secret is True
    assert m.outputs["password"].value == "${resources.password.value}"
    assert m.outputs["host"].secret is False
    assert m.cost is not None
    assert m.cost.monthly == Decimal("4.00")
    assert m.cost.currency == "USD"
    assert m.compliance == ("encryption-in-transit", "owner-labelled")
    assert m.sla["availability"] == "99.9"


def test_load_accepts_the_file_itself() -> None:
    assert load_component(FIXTURE / "component.yaml").name == "postgres-database"


def test_validate_reports_a_directory_without_manifest(tmp_path: Path) -> None:
    manifest, diags = validate_component(tmp_path)
    assert manifest is None
    assert [d.summary for d in diags] == ["Component manifest not found"]


def test_load_raises_with_every_diagnostic(tmp_path: Path) -> None:
    data = _data()
    data["metadata"]["name"] = "Bad_Name"
    data["metadata"]["version"] = "1.4"
    with pytest.raises(InvalidInputError) as info:
        load_component(_write(tmp_path, data))
    summaries = sorted(d.summary for d in info.value.diagnostics)
    assert summaries == ["Invalid component name", "Invalid version"]
    assert all(d.file.endswith("component.yaml") for d in info.value.diagnostics)


def test_validate_returns_the_manifest_when_only_lint_fails(tmp_path: Path) -> None:
    data = _data()
    del data["spec"]["outputs"]["username"]
    manifest, diags = validate_component(_write(tmp_path, data))
    assert isinstance(manifest, ComponentManifest)
    assert has_errors(diags)


def test_minimal_component_gets_defaults() -> None:
    m = manifest_from_data(
        {
            "apiVersion": "stackyard.dev/v1",
            "kind": "Component",
            "metadata": {"name": "vol", "version": "0.1.0", "owner": "team-a"},
            "spec": {"provides": {"type": "volume"}, "outputs": {"source": "/tmp/x"}},
        }
    )
    assert (m.lifecycle, m.deletion, m.cost, m.description) == ("experimental", "delete", None, "")
    assert m.inputs == {"type": "object"}


# -- structure ------------------------------------------------------------------------------

SEMVER = [
    ("1.4.2", True),
    ("0.0.0", True),
    ("1.0.0-rc.1", True),
    ("1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay", True),
    ("1.0.0+20130313144700", True),
    ("1.4", False),
    ("01.4.2", False),
    ("1.4.2-", False),
    ("1.4.2-01", False),
    ("1.4.2+", False),
    ("v1.4.2", False),
    ("1.4.2\n", False),
    ("1.4.２", False),
]


@pytest.mark.parametrize(("version", "ok"), SEMVER, ids=[repr(v) for v, _ in SEMVER])
def test_versions_are_full_semver(version: str, ok: bool) -> None:
    data = _data()
    data["metadata"]["version"] = version
    diags = check_structure(data)
    assert (not diags) is ok, diags
    if not ok:
        assert [d.summary for d in diags] == ["Invalid version"]


STRUCTURE = [
    # (id, mutate, summary, path, reason)
    (
        "name-too-short",
        ("metadata", "name", "a"),
        "Invalid component name",
        "metadata.name",
        "names are 2-63 characters",
    ),
    (
        "name-trailing-newline",
        ("metadata", "name", "pg\n"),
        "Invalid component name",
        "metadata.name",
        "'$' must not accept a trailing newline",
    ),
    (
        "name-not-string",
        ("metadata", "name", 42),
        "Invalid component name",
        "metadata.name",
        "a number is not a name",
    ),
    (
        "lifecycle",
        ("metadata", "lifecycle", "stable"),
        "Invalid lifecycle",
        "metadata.lifecycle",
        "closed enum",
    ),
    (
        "deletion",
        ("spec", "deletion", "destroy"),
        "Invalid deletion policy",
        "spec.deletion",
        "closed enum",
    ),
    (
        "float-cost",
        ("spec", "cost", {"monthly": 4.0}),
        "Invalid cost",
        "spec.cost.monthly",
        "floats lose precision",
    ),
    (
        "negative-cost",
        ("spec", "cost", {"monthly": "-1"}),
        "Invalid cost",
        "spec.cost.monthly",
        "costs are not negative",
    ),
    (
        "nan-cost",
        ("spec", "cost", {"monthly": "NaN"}),
        "Invalid cost",
        "spec.cost.monthly",
        "NaN parses as a Decimal but is no cost",
    ),
    (
        "currency",
        ("spec", "cost", {"monthly": "1", "currency": "usd"}),
        "Invalid currency",
        "spec.cost.currency",
        "ISO 4217 codes",
    ),
    ("sla-list", ("spec", "sla", ["99.9"]), "Invalid SLA", "spec.sla", "sla is a mapping"),
    (
        "compliance-string",
        ("spec", "compliance", "pci"),
        "Wrong type",
        "spec.compliance",
        "compliance is a list",
    ),
    (
        "provides-missing-type",
        ("spec", "provides", {}),
        "Missing field",
        "spec.provides.type",
        "provides names a type",
    ),
    (
        "requires-bad-type",
        ("spec", "requires", {"server": {"type": "Postgres!"}}),
        "Invalid resource type",
        "spec.requires.server.type",
        "type names are lowercase",
    ),
    (
        "requires-unknown-key",
        ("spec", "requires", {"server": {"type": "pg", "klass": "x"}}),
        "Unknown field",
        "spec.requires.server.klass",
        "the key is 'class'",
    ),
    (
        "output-secret-without-value",
        ("spec", "outputs", {"password": {"secret": True}}),
        "Missing field",
        "spec.outputs.password.value",
        "{secret} needs a value",
    ),
    (
        "inputs-not-object",
        ("spec", "inputs", {"type": "array"}),
        "Invalid inputs schema",
        "spec.inputs.type",
        "params are a mapping",
    ),
    (
        "inputs-remote-ref",
        ("spec", "inputs", {"$ref": "https://example.com/s.json"}),
        "Invalid inputs schema",
        "spec.inputs.$ref",
        "validation never fetches",
    ),
    (
        "label-value-number",
        ("metadata", "labels", {"tier": 1}),
        "Invalid label value",
        "metadata.labels.tier",
        "label values are strings",
    ),
]


def _mutate(data: dict[str, Any], change: tuple[str, str, Any]) -> dict[str, Any]:
    section, key, value = change
    out = copy.deepcopy(data)
    out[section][key] = value
    return out


@pytest.mark.parametrize(
    ("change", "summary", "path", "reason"),
    [c[1:] for c in STRUCTURE],
    ids=[c[0] for c in STRUCTURE],
)
def test_structure_errors(
    change: tuple[str, str, Any], summary: str, path: str, reason: str
) -> None:
    diags = check_structure(_mutate(_data(), change), file="c.yaml")
    assert [(d.summary, d.path) for d in diags] == [(summary, path)], reason
    assert all(d.severity is Severity.ERROR and d.file == "c.yaml" and d.detail for d in diags)


def test_hostile_names_are_escaped_in_paths() -> None:
    data = _data()
    data["spec"]["resources"]["x\x1b[31m"] = data["spec"]["resources"].pop("role")
    diags = check_structure(data)
    assert [d.summary for d in diags] == ["Invalid resource name"]
    assert "\x1b" not in diags[0].path and "\x1b" not in diags[0].detail


def test_non_string_keys_are_refused() -> None:
    data = _data()
    data["spec"]["resources"][1] = data["spec"]["resources"].pop("role")
    assert has_errors(check_structure(data))


# -- params ---------------------------------------------------------------------------------

NESTED_INPUTS = {
    "type": "object",
    "required": ["size"],
    "additionalProperties": False,
    "properties": {
        "size": {"type": "integer", "minimum": 1},
        "extensions": {"type": "array", "items": {"type": "string"}, "default": []},
        "tls": {
            "type": "object",
            "default": {},
            "properties": {
                "mode": {"type": "string", "default": "require"},
                "ca": {"type": "string", "writeOnly": True, "pattern": "^-----BEGIN"},
            },
        },
        "users": {
            "type": "array",
            "items": {"type": "object", "properties": {"role": {"default": "ro"}}},
        },
    },
}


@pytest.fixture
def nested() -> ComponentManifest:
    data = _data()
    data["spec"]["inputs"] = NESTED_INPUTS
    return manifest_from_data(data)


def test_apply_inputs_fills_defaults_recursively(nested: ComponentManifest) -> None:
    params = {"size": 2, "users": [{}, {"role": "rw"}]}
    assert apply_inputs(nested, params) == {
        "size": 2,
        "extensions": [],
        "tls": {"mode": "require"},
        "users": [{"role": "ro"}, {"role": "rw"}],
    }
    assert params == {"size": 2, "users": [{}, {"role": "rw"}]}, "the caller's params are kept"


def test_apply_inputs_defaults_are_copies(nested: ComponentManifest) -> None:
    first = apply_inputs(nested, {"size": 1})
    first["extensions"].append("x")
    assert apply_inputs(nested, {"size": 1})["extensions"] == []


PARAMS = [
    (
        "item-type",
        {"size": 1, "extensions": [1]},
        "Wrong type",
        "params.extensions[0]",
        "each extension is a string",
    ),
    ("missing", {}, "Missing field", "params.size", "size is required and has no default"),
    ("minimum", {"size": 0}, "Invalid value", "params.size", "size is at least 1"),
    (
        "unknown",
        {"size": 1, "extension": []},
        "Unknown field",
        "params.extension",
        "additionalProperties is false",
    ),
    (
        "nested",
        {"size": 1, "tls": {"mode": 3}},
        "Wrong type",
        "params.tls.mode",
        "nested properties are validated",
    ),
]


@pytest.mark.parametrize(
    ("params", "summary", "path", "reason"), [p[1:] for p in PARAMS], ids=[p[0] for p in PARAMS]
)
def test_apply_inputs_errors_name_the_field(
    nested: ComponentManifest, params: dict[str, Any], summary: str, path: str, reason: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_inputs(nested, params)
    diags = info.value.diagnostics
    assert [(d.summary, d.path) for d in diags] == [(summary, path)], reason
    assert path in diags[0].detail
    assert diags[0].subject == "postgres-database@1.4.2"


def test_apply_inputs_hides_sensitive_values(nested: ComponentManifest) -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_inputs(nested, {"size": 1, "tls": {"ca": "hunter2"}})
    assert "hunter2" not in info.value.diagnostics[0].detail


def test_apply_inputs_refuses_a_non_mapping(nested: ComponentManifest) -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_inputs(nested, ["size"])  # type: ignore[arg-type]
    assert info.value.diagnostics[0].path == "params"


def test_apply_inputs_suggests_the_close_name() -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_inputs(load_component(FIXTURE), {"extension": ["pgcrypto"]})
    assert "Did you mean 'extensions'?" in info.value.diagnostics[0].detail


# -- the corpus and the CLI -----------------------------------------------------------------

CORPUS_CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS_CASES) >= 15


@pytest.mark.parametrize("case", CORPUS_CASES)
def test_corpus_case_is_invalid_with_the_expected_summary(case: str) -> None:
    _, diags = validate_component(CORPUS / case)
    expected = (CORPUS / case / "expect").read_text().strip()
    assert has_errors(diags)
    assert expected in [d.summary for d in diags]
    assert all(d.file for d in diags)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "component", "validate", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_validate_valid_component() -> None:
    res = _cli(str(FIXTURE))
    assert res.returncode == 0, res.stderr
    assert "postgres-database@1.4.2 is valid" in res.stdout


@pytest.mark.parametrize("flag", ["--output", "-o"])
def test_cli_validate_json(flag: str) -> None:
    ok = _cli(str(FIXTURE), flag, "json")
    assert ok.returncode == 0
    assert json.loads(ok.stdout) == {"valid": True, "diagnostics": []}
    bad = _cli(str(CORPUS / "resource-cycle"), flag, "json")
    assert bad.returncode == 2
    report = json.loads(bad.stdout)
    assert report["valid"] is False
    assert [d["summary"] for d in report["diagnostics"]] == ["Dependency cycle"]
    assert "database -> role -> database" in report["diagnostics"][0]["detail"]


def test_cli_validate_text_errors_go_to_stderr_without_traceback() -> None:
    res = _cli(str(CORPUS / "malformed-yaml"))
    assert res.returncode == 2
    assert "Malformed YAML" in res.stderr
    assert "Traceback" not in res.stderr
