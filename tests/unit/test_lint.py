"""The static lint: references, before-apply rules, cycles and the type contract."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackyard.diagnostics import Severity
from stackyard.model.component import manifest_from_data
from stackyard.model.component_schema import check_structure
from stackyard.model.lint import find_cycles, lint

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "components" / "postgres-database"
BASE: dict[str, Any] = yaml.safe_load((FIXTURE / "component.yaml").read_text())

Mutation = Callable[[dict[str, Any]], None]


def _lint(mutate: Mutation) -> list[tuple[str, str, str]]:
    data = copy.deepcopy(BASE)
    mutate(data)
    assert not check_structure(data), "the case must be structurally valid"
    return [(d.severity.value, d.summary, d.path) for d in lint(manifest_from_data(data))]


def _res(data: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = data["spec"]["resources"]
    return resources


def _set_config(resource: str, key: str, value: Any) -> Mutation:
    return lambda d: _res(d)[resource]["config"].__setitem__(key, value)


def _set(resource: str, key: str, value: Any) -> Mutation:
    return lambda d: _res(d)[resource].__setitem__(key, value)


def _set_output(name: str, value: Any) -> Mutation:
    return lambda d: d["spec"]["outputs"].__setitem__(name, value)


def _drop_output(name: str) -> Mutation:
    return lambda d: d["spec"]["outputs"].pop(name)


def test_the_design_example_is_clean() -> None:
    assert _lint(lambda d: None) == []


E = "error"
W = "warning"
CASES: list[tuple[str, Mutation, list[tuple[str, str, str]], str]] = [
    (
        "unknown-resource",
        _set_config("database", "owner", "${resources.rol.name}"),
        [(E, "Unknown resource", "spec.resources.database.config.owner")],
        "'rol' is not a resource",
    ),
    (
        "unknown-root",
        _set_config("role", "name", "${contxt.name}"),
        [(E, "Unknown placeholder root", "spec.resources.role.config.name")],
        "component templates have five roots",
    ),
    (
        "unknown-input",
        _set("extension", "for_each", "${inputs.extension}"),
        [(E, "Unknown input", "spec.resources.extension.for_each")],
        "inputs are checked against spec.inputs.properties",
    ),
    (
        "whole-inputs",
        _set_config("role", "labels", "${inputs}"),
        [],
        "the whole params mapping may be referenced",
    ),
    (
        "unknown-context-key",
        _set_config("role", "name", "${context.namespace}"),
        [(E, "Unknown context key", "spec.resources.role.config.name")],
        "context has a fixed set of keys",
    ),
    (
        "context-has-no-subkeys",
        _set_config("role", "name", "${context.name.first}"),
        [(E, "Unknown context key", "spec.resources.role.config.name")],
        "context values are strings",
    ),
    (
        "incomplete",
        _set_config("role", "name", "${resources}"),
        [(E, "Incomplete placeholder", "spec.resources.role.config.name")],
        "resources needs a name",
    ),
    (
        "unknown-requirement",
        _set_config("role", "server", "${requires.srv.admin_url}"),
        [(E, "Unknown requirement", "spec.resources.role.config.server")],
        "'srv' is not in spec.requires",
    ),
    (
        "unknown-contract-output",
        _set_config("role", "server", "${requires.server.url}"),
        [(E, "Unknown contract output", "spec.resources.role.config.server")],
        "postgres-instance has admin_url, not url",
    ),
    (
        "embedded-reference",
        _set_config("role", "comment", "owned by ${context.owner} in ${context.env}"),
        [],
        "references embedded in strings are checked too, and these are fine",
    ),
    (
        "list-item-reference",
        _set_config("role", "grants", ["${resources.nope.name}"]),
        [(E, "Unknown resource", "spec.resources.role.config.grants[0]")],
        "paths index into lists",
    ),
    (
        "each-without-for-each",
        _set_config("database", "owner", "${each.value}"),
        [(E, "each outside for_each", "spec.resources.database.config.owner")],
        "each exists only under for_each",
    ),
    (
        "each-bad-key",
        _set_config("extension", "name", "${each.item}"),
        [(E, "Unknown each key", "spec.resources.extension.config.name")],
        "each has key and value",
    ),
    (
        "each-in-for-each",
        _set("extension", "for_each", "${each.value}"),
        [(E, "each outside for_each", "spec.resources.extension.for_each")],
        "for_each itself defines each",
    ),
    (
        "for-each-on-resource",
        _set("extension", "for_each", "${resources.database.name}"),
        [(E, "Reference not known before apply", "spec.resources.extension.for_each")],
        "for_each must be known before apply",
    ),
    (
        "when-on-resource",
        _set("role", "when", "${resources.password.value}"),
        [(E, "Reference not known before apply", "spec.resources.role.when")],
        "when must be known before apply",
    ),
    (
        "when-on-input",
        _set("role", "when", "${inputs.extensions}"),
        [],
        "inputs are known before apply",
    ),
    (
        "requires-params-on-resource",
        lambda d: d["spec"]["requires"]["server"].__setitem__(
            "params", {"owner": "${resources.role.name}"}
        ),
        [(E, "Reference not known before apply", "spec.requires.server.params.owner")],
        "requirements resolve before resources exist",
    ),
    (
        "malformed",
        _set_config("role", "name", "${context.name"),
        [(E, "Malformed placeholder", "spec.resources.role.config.name")],
        "unterminated placeholder",
    ),
    (
        "escaped-dollar",
        _set_config("role", "name", "$${not.a.reference}"),
        [],
        "$$ is a literal $",
    ),
    (
        "cycle",
        _set_config("role", "password", "${resources.database.name}"),
        [(E, "Dependency cycle", "spec.resources.database")],
        "role and database reference each other",
    ),
    (
        "self-cycle",
        _set_config("password", "length", "${resources.password.length}"),
        [(E, "Dependency cycle", "spec.resources.password")],
        "a self-reference is a cycle of one",
    ),
    (
        "missing-output",
        _drop_output("username"),
        [(E, "Missing contract output", "spec.outputs.username")],
        "the postgres contract requires username",
    ),
    (
        "secret-not-marked",
        _set_output("password", "${resources.password.value}"),
        [(E, "Secret output not marked secret", "spec.outputs.password")],
        "the contract marks password x-secret",
    ),
    (
        "wrong-literal-type",
        _set_output("port", [5432]),
        [(E, "Output has the wrong type", "spec.outputs.port")],
        "a port is not a list",
    ),
    (
        "embedded-string-for-integer",
        _set_output("port", {"value": "${requires.server.port}0"}),
        [],
        "port accepts a digit string, so an embedded reference is fine",
    ),
    (
        "right-literal-type",
        _set_output("port", 5432),
        [],
        "a literal port is fine",
    ),
    (
        "secret-copied-to-plain-output",
        _set_output("admin", "${requires.server.admin_url}"),
        [(W, "Secret value in plain output", "spec.outputs.admin")],
        "copying a secret into a plain output would show it in clear",
    ),
    (
        "type-without-contract",
        lambda d: d["spec"]["provides"].__setitem__("type", "postgress"),
        [(W, "No contract for type", "spec.provides.type")],
        "unknown types are not checked, but said so",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_lint(mutate: Mutation, expected: list[tuple[str, str, str]], reason: str) -> None:
    assert _lint(mutate) == expected, reason


def test_details_say_what_to_do() -> None:
    data = copy.deepcopy(BASE)
    _res(data)["database"]["config"]["owner"] = "${resources.rol.name}"
    [diag] = lint(manifest_from_data(data))
    assert diag.severity is Severity.ERROR
    assert "Did you mean 'role'?" in diag.detail
    assert "database, extension, password, role" in diag.detail


def test_open_inputs_allow_any_key() -> None:
    data = copy.deepcopy(BASE)
    data["spec"]["inputs"]["additionalProperties"] = {"type": "string"}
    _res(data)["role"]["config"]["name"] = "${inputs.anything}"
    assert lint(manifest_from_data(data)) == []


CYCLES = [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]], "two nodes"),
    ({"a": {"a"}}, [["a"]], "self loop"),
    ({"c": {"a"}, "a": {"b"}, "b": {"c"}, "d": {"a"}}, [["a", "b", "c"]], "d only leads in"),
    ({"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"x"}}, [["a", "b"], ["x", "y"]], "two cycles"),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, [], "a chain is no cycle"),
]


@pytest.mark.parametrize(
    ("deps", "cycles", "reason"), CYCLES, ids=["pair", "self", "tail", "two", "chain"]
)
def test_find_cycles_is_deterministic(
    deps: dict[str, set[str]], cycles: list[list[str]], reason: str
) -> None:
    assert find_cycles(deps) == cycles, reason
    assert find_cycles(dict(reversed(list(deps.items())))) == cycles, "order does not matter"
