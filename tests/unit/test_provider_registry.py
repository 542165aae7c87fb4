"""The provider registry: discovery through entry points, origins, broken plugins, conflicts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from _plugins import install_plugin
from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    Provider,
    UpdateRequest,
)
from stackyard.providers.registry import ProviderRegistry

pytestmark = pytest.mark.unit


def fake_kind(kind_name: str) -> Any:
    class Fake:
        name: ClassVar[str] = kind_name
        config_model: ClassVar[type[KindConfig]] = KindConfig
        sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
        naming: ClassVar[NamingRule] = NamingRule()

        def observe(self, req: ObserveRequest) -> Observed | None:
            return None

        def create(self, req: CreateRequest) -> Applied:
            return Applied(outputs={})

        def update(self, req: UpdateRequest) -> Applied:
            return Applied(outputs={})

        def delete(self, req: DeleteRequest) -> None:
            return None

    return Fake()


def fake_provider(name: str, *kinds: str) -> Provider:
    return Provider(name=name, version="9.9", kinds=tuple(fake_kind(k) for k in kinds))


# -- from_providers: rules ---------------------------------------------------------------------

RULE_CASES = [
    # (providers, error match or None, reason)
    ([("acme", "acme.thing"), ("beta", "beta.thing")], None, "distinct names are fine"),
    (
        [("acme", "acme.a"), ("acme", "acme.b")],
        "Two providers are named 'acme'",
        "a duplicate provider name is refused",
    ),
    ([("acme", "acme.a", "acme.a")], "defined twice", "a duplicate kind in one provider"),
    ([("acme", "other.a")], "must be named 'acme.<kind>'", "kinds start with the provider name"),
    ([("acme", "acmex.a")], "must be named 'acme.<kind>'", "the prefix ends with a dot"),
    ([("Acme", "Acme.a")], "must match", "provider names are lower case"),
]


@pytest.mark.parametrize(("specs", "error", "reason"), RULE_CASES, ids=[c[-1] for c in RULE_CASES])
def test_from_providers_rules(specs: list[tuple[str, ...]], error: str | None, reason: str) -> None:
    providers = [fake_provider(name, *kinds) for name, *kinds in specs]
    if error is None:
        reg = ProviderRegistry.from_providers(providers)
        assert [p.name for p in reg.providers()] == sorted(s[0] for s in specs), reason
        return
    with pytest.raises(ProviderPermanentError, match=error):
        ProviderRegistry.from_providers(providers)


def test_kind_lookup_and_did_you_mean() -> None:
    reg = ProviderRegistry.from_providers([fake_provider("acme", "acme.bucket", "acme.queue")])
    assert reg.kind("acme.bucket").name == "acme.bucket"
    assert reg.provider_of("acme.queue").name == "acme"
    assert reg.kind_names() == ["acme.bucket", "acme.queue"]
    with pytest.raises(
        ProviderPermanentError, match=re.escape("Did you mean 'acme.bucket'")
    ) as exc:
        reg.kind("acme.buckt")
    assert exc.value.hint and "stackyard providers list" in exc.value.hint
    with pytest.raises(
        ProviderPermanentError, match=re.escape("Unknown resource kind 'zzz.q'.") + "$"
    ):
        reg.kind("zzz.q")


# -- discovery through real entry points --------------------------------------------------------


GOOD = """
    from stackyard.providers.noop import Resource
    from stackyard.providers.api import Provider

    class Thing(Resource):
        name = "acme.thing"

    PROVIDER = Provider(name="acme", version="1.2", kinds=(Thing(),), description="Acme things")
"""


def test_discover_finds_builtins_and_a_plugin_with_origins(plugin_dir: Path) -> None:
    install_plugin(
        plugin_dir, "acme-providers", "1.2", {"acme": "acme_good:PROVIDER"}, {"acme_good": GOOD}
    )
    reg = ProviderRegistry.discover()
    infos = {p.name: p for p in reg.providers()}
    assert (
        infos["random"].origin.startswith("stackyard ") and "(built-in)" in infos["random"].origin
    )
    assert infos["random"].module == "stackyard.providers.random:PROVIDER"
    assert infos["noop"].kinds == ("noop.resource",)
    assert infos["acme"].origin == "acme-providers 1.2 (plugin)"
    assert infos["acme"].kinds == ("acme.thing",) and infos["acme"].description == "Acme things"
    assert reg.kind("acme.thing").name == "acme.thing"
    assert reg.kind("random.password").name == "random.password"


BROKEN_CASES = [
    # (module source, entry value, error match, reason)
    (
        "raise RuntimeError('no licence key')\n",
        "acme_broken:PROVIDER",
        "RuntimeError: no licence key",
        "an import-time exception",
    ),
    ("X = 1\n", "acme_broken:PROVIDER", "has no attribute 'PROVIDER'", "a missing attribute"),
    (
        "PROVIDER = 'not a provider'\n",
        "acme_broken:PROVIDER",
        "is a str, not a",
        "the object is not a Provider",
    ),
    (
        GOOD.replace('name="acme"', 'name="acmo"'),
        "acme_broken:PROVIDER",
        "entry point is named 'acme'",
        "the provider name must match the entry point",
    ),
    ("", "acme_missing_module:PROVIDER", "ModuleNotFoundError", "the module is not there"),
]


@pytest.mark.parametrize(
    ("source", "value", "error", "reason"), BROKEN_CASES, ids=[c[-1] for c in BROKEN_CASES]
)
def test_a_broken_plugin_is_listed_not_fatal(
    plugin_dir: Path, source: str, value: str, error: str, reason: str
) -> None:
    install_plugin(plugin_dir, "acme-providers", "1.2", {"acme": value}, {"acme_broken": source})
    reg = ProviderRegistry.discover()
    info = {p.name: p for p in reg.providers()}["acme"]
    assert info.broken and error in info.error, reason
    assert info.origin == "acme-providers 1.2 (plugin)" and info.kinds == ()
    with pytest.raises(ProviderPermanentError, match="which is broken") as exc:
        reg.kind("acme.thing")
    assert error in exc.value.message, reason
    assert reg.kind("noop.resource").name == "noop.resource", "the rest still works"


def test_a_plugin_reusing_a_builtin_name_is_refused_naming_both(plugin_dir: Path) -> None:
    source = GOOD.replace('"acme.thing"', '"random.thing"').replace('name="acme"', 'name="random"')
    install_plugin(
        plugin_dir, "evil-random", "0.1", {"random": "acme_evil:PROVIDER"}, {"acme_evil": source}
    )
    with pytest.raises(ProviderPermanentError, match="Two providers are named 'random'") as exc:
        ProviderRegistry.discover()
    assert "evil-random 0.1 (plugin)" in exc.value.message
    assert "(built-in)" in exc.value.message
    assert exc.value.hint and "Uninstall" in exc.value.hint


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_providers_list_json_shows_builtins_and_plugin(tmp_path: Path) -> None:
    install_plugin(
        tmp_path, "acme-providers", "1.2", {"acme": "acme_cli:PROVIDER"}, {"acme_cli": GOOD}
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    res = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    for name, kinds in (("random", ["random.id", "random.password"]), ("noop", ["noop.resource"])):
        row = rows[name]
        assert set(row) >= {"name", "version", "kinds", "origin", "description", "error"}
        assert row["kinds"] == kinds and row["error"] is None
        assert "(built-in)" in row["origin"]
    assert rows["acme"]["origin"] == "acme-providers 1.2 (plugin)"


def test_cli_providers_list_text() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "providers", "list", "-o", "text"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert res.returncode == 0, res.stderr
    assert "random.password" in res.stdout and "noop.resource" in res.stdout
    assert "(built-in)" in res.stdout
