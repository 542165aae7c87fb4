"""A component that uses every ``${context.*}`` key passes validation and its own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.components.testing import run_tests
from stackyard.model.component import validate_component
from stackyard.model.context import CONTEXT_KEYS
from stackyard.providers.noop import LEDGER_ENV, Ledger
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.naming import instance_name

pytestmark = pytest.mark.integration

COMPONENT = """\
apiVersion: stackyard.dev/v1
kind: Component
metadata: {name: context-echo, version: 1.0.0, owner: team-data, description: Echoes its context.}
spec:
  provides: {type: volume}
  resources:
    echo:
      kind: noop.resource
      config:
%s
  outputs:
    source: ${resources.echo.name}
"""
TEST = """\
workload:
  apiVersion: score.dev/v1b1
  metadata: {name: shop}
  containers:
    main: {image: busybox, variables: {SOURCE: "${resources.files.source}"}}
  resources:
    files: {type: volume}
expect: {outputs: [source]}
"""


def test_a_component_using_every_context_key_passes_its_tests(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "context-echo"
    (folder / "tests").mkdir(parents=True)
    config = "\n".join(f"        {key}: ${{context.{key}}}" for key in CONTEXT_KEYS)
    (folder / "component.yaml").write_text(COMPONENT % config, encoding="utf-8")
    (folder / "tests" / "basic.yaml").write_text(TEST, encoding="utf-8")
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))

    manifest, diagnostics = validate_component(folder)
    assert manifest is not None and [d.summary for d in diagnostics] == []
    [outcome] = run_tests(folder, manifest, kinds=ProviderRegistry.discover())

    assert outcome.ok, [d.detail for d in outcome.diagnostics]
    [created] = [e for e in Ledger(ledger).entries() if e["op"] == "create"]
    seen = {k: v for k, v in created["config"].items() if k in CONTEXT_KEYS}
    env, uid = seen["env"], "volume.default#shop.files"
    assert seen == {
        "env": env,
        "env_type": "ephemeral",
        "workload": "shop",
        "uid": uid,
        "name": instance_name(env, uid),
        "region": "",
        "owner": "team-data",
    }
