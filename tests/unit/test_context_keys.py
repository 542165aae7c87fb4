"""``${context.*}`` means the same in the lint, in expansion and in the docs (DESIGN §3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stackyard.environments.resolver import Request, Resolver
from stackyard.errors import PlaceholderError
from stackyard.model.component import ComponentManifest, manifest_from_data
from stackyard.model.context import CONTEXT_KEYS, EACH_KEYS, TEMPLATE_ROOTS
from stackyard.model.ids import ResourceUid
from stackyard.model.lint import lint
from stackyard.model.platform import Binding
from stackyard.model.values import Unknown
from stackyard.providers.postgres.connection import NAMING, identifier_problem
from stackyard.resolve.bindings import Level
from stackyard.resolve.graph import Graph, expand
from stackyard.resolve.naming import instance_name

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "components.md"
UID = "volume.default#app.files"
INSTALLATION = "inst-1"


def _component(config: dict[str, Any]) -> ComponentManifest:
    return manifest_from_data(
        {
            "apiVersion": "stackyard.dev/v1",
            "kind": "Component",
            "metadata": {
                "name": "context-echo",
                "version": "1.0.0",
                "owner": "team-data",
                "description": "Echoes its context.",
            },
            "spec": {
                "provides": {"type": "volume"},
                "resources": {"echo": {"kind": "noop.resource", "config": config}},
                "outputs": {"source": "${resources.echo.id}"},
            },
        }
    )


def _expanded(comp: ComponentManifest) -> Graph:
    """Resolve one request of the component like a deploy does, then expand it."""
    resolver = Resolver(
        env="dev",
        env_type="development",
        owner="team-checkout",
        installation=INSTALLATION,
        levels=[Level("environment dev", (Binding("volume", "context-echo", "^1"),))],
        versions=lambda name: ["1.0.0"],
        fetch=lambda name, version: (comp, "sha256:x"),
    )
    res = resolver.resolve([Request(ResourceUid.parse(UID), {}, "app", "app: resources.files")])
    assert not res.diagnostics, [d.detail for d in res.diagnostics]
    graph, diags = expand(list(res.instances.values()), env="dev", naming_for=lambda _k: NAMING)
    assert not diags, [d.detail for d in diags]
    return graph


def _config(graph: Graph) -> Any:
    return graph.resolve_config(f"{UID}/echo", lambda _address: Unknown("known after apply"))


EXPECTED = {
    "env": "dev",
    "env_type": "development",
    "workload": "app",
    "uid": UID,
    "name": instance_name("dev", UID, installation=INSTALLATION),
    "region": "",
    "owner": "team-checkout",
}


@pytest.mark.parametrize("key", CONTEXT_KEYS)
def test_every_context_key_the_lint_accepts_expands(key: str) -> None:
    comp = _component({"value": f"${{context.{key}}}", "embedded": f"<${{context.{key}}}>"})
    assert [d.summary for d in lint(comp)] == []
    config = _config(_expanded(comp))
    assert config["value"] == EXPECTED[key]
    assert config["embedded"] == f"<{EXPECTED[key]}>"


def test_the_lint_and_expansion_know_the_same_context_keys() -> None:
    comp = _component({"value": "${context.env}"})
    [inst] = _expanded(comp).instances.values()
    assert sorted(inst.context) == sorted(CONTEXT_KEYS) == sorted(EXPECTED)


def test_an_unknown_context_key_is_refused_by_both() -> None:
    comp = _component({"value": "${context.namespace}"})
    assert [d.summary for d in lint(comp)] == ["Unknown context key"]
    with pytest.raises(PlaceholderError, match="'context' has: " + ", ".join(sorted(EXPECTED))):
        _config(_expanded(comp))


def test_the_name_is_a_deterministic_identifier_per_instance() -> None:
    name = instance_name("dev", UID, installation=INSTALLATION)
    assert name == instance_name("dev", UID, installation=INSTALLATION)
    assert re.fullmatch(r"dev-app-files-[0-9a-f]{8}", name)
    others = {
        instance_name("prod", UID, installation=INSTALLATION),
        instance_name("dev", "volume.default#app.other", installation=INSTALLATION),
        instance_name("dev", UID, installation="inst-2"),
        instance_name("dev", UID),
    }
    assert name not in others and len(others) == 4
    long = instance_name("e" * 80, "volume.default#" + "x" * 200)
    assert len(long) <= 63 and re.fullmatch(r"[a-z][a-z0-9-]*", long)
    assert identifier_problem(long) is None


def test_the_docs_list_the_roots_and_keys_of_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `Unknown context key`"))
    assert re.findall(r"`([a-z_]+)`", row.split("|")[2]) == list(CONTEXT_KEYS)
    row = next(line for line in text.splitlines() if line.startswith("| `Unknown each key`"))
    assert re.findall(r"`([a-z_]+)`", row.split("|")[2]) == list(EACH_KEYS)
    row = next(line for line in text.splitlines() if line.startswith("| `Unknown placeholder"))
    assert re.findall(r"`([a-z_]+)`", row.split("|")[2]) == list(TEMPLATE_ROOTS)
    for key in CONTEXT_KEYS:
        assert f"`${{context.{key}}}`" in text, f"docs/components.md does not explain {key}"
