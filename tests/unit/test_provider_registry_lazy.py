"""The provider registry imports a provider on first use of one of its kinds (issue 13).

Discovery reads entry-point metadata only; the entry point's name is the prefix of its kinds'
names, so a lookup imports exactly one provider's module. Listing imports them all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from _plugins import install_plugin
from stackyard.errors import ProviderPermanentError
from stackyard.providers.registry import ProviderRegistry

pytestmark = pytest.mark.unit

BUILTIN_MODULES = [
    "stackyard.providers.local",
    "stackyard.providers.noop",
    "stackyard.providers.postgres",
    "stackyard.providers.random",
    "stackyard.providers.redis",
]


def _imported_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; which built-in provider modules it imported."""
    probe = textwrap.dedent(
        f"""
        import json, sys
        from stackyard.providers.registry import ProviderRegistry
        {code}
        print(json.dumps(sorted(m for m in sys.modules if m in {BUILTIN_MODULES!r})))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    found: list[str] = json.loads(res.stdout.splitlines()[-1])
    return found


CASES = [
    # (code, provider modules imported, reason)
    ("ProviderRegistry.discover()", [], "discovery reads metadata only"),
    (
        "ProviderRegistry.discover().kind('random.password')",
        ["stackyard.providers.random"],
        "a kind imports its own provider",
    ),
    (
        "r = ProviderRegistry.discover(); r.kind('noop.resource'); r.provider_of('random.id')",
        ["stackyard.providers.noop", "stackyard.providers.random"],
        "each provider on first use",
    ),
    (
        "ProviderRegistry.discover().providers()",
        BUILTIN_MODULES,
        "listing imports every provider",
    ),
]


@pytest.mark.parametrize(("code", "expected", "reason"), CASES, ids=[c[-1] for c in CASES])
def test_a_lookup_imports_only_its_provider(code: str, expected: list[str], reason: str) -> None:
    assert _imported_after(code) == expected, reason


def test_an_unknown_kind_still_suggests_across_every_provider() -> None:
    reg = ProviderRegistry.discover()
    with pytest.raises(ProviderPermanentError, match=re.escape("Did you mean 'postgres.database'")):
        reg.kind("postgress.database")
    with pytest.raises(ProviderPermanentError, match=re.escape("Did you mean 'random.password'")):
        reg.kind("random.pasword")


def _install(root: Path, entries: dict[str, str], modules: dict[str, str]) -> None:
    install_plugin(root, "acme-providers", "1.2", entries, modules)


COUNTING = """
    import pathlib, time
    from stackyard.providers.noop import Resource
    from stackyard.providers.api import Provider

    with open(pathlib.Path(__file__).with_suffix(".imports"), "a") as fh:
        fh.write("x")
    time.sleep(0.05)  # widen the window in which racing lookups could import it twice

    class Thing(Resource):
        name = "acme.thing"

    PROVIDER = Provider(name="acme", version="1.2", kinds=(Thing(),))
"""


def test_a_broken_plugin_costs_nothing_until_its_kind_is_used(plugin_dir: Path) -> None:
    broken = "import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n1/0\n"
    _install(plugin_dir, {"acme": "acme_lazy_broken:PROVIDER"}, {"acme_lazy_broken": broken})
    reg = ProviderRegistry.discover()
    assert reg.kind("noop.resource").name == "noop.resource"
    ran = plugin_dir / "acme_lazy_broken.ran"
    assert not ran.exists(), "a kind of another provider imported it"
    with pytest.raises(ProviderPermanentError, match=r"which is broken.*ZeroDivisionError"):
        reg.kind("acme.thing")
    assert ran.exists()
    assert {p.name: p for p in reg.providers()}["acme"].broken


def test_racing_lookups_load_a_provider_once(plugin_dir: Path) -> None:
    _install(plugin_dir, {"acme": "acme_counting:PROVIDER"}, {"acme_counting": COUNTING})
    reg = ProviderRegistry.discover()
    kinds: list[object] = []
    threads = [
        threading.Thread(target=lambda: kinds.append(reg.kind("acme.thing"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kinds) == 8 and len({id(k) for k in kinds}) == 1
    assert (plugin_dir / "acme_counting.imports").read_text() == "x"


def test_a_malformed_provider_is_broken_not_fatal(plugin_dir: Path) -> None:
    """A Provider whose kinds cannot even be checked (``kinds=None``) is a broken plugin: its
    kinds say so, and listing and did-you-mean still work (it escaped as a TypeError)."""
    source = (
        "from stackyard.providers.api import Provider\n"
        'PROVIDER = Provider(name="acme", version="1", kinds=None)\n'
    )
    _install(plugin_dir, {"acme": "acme_malformed:PROVIDER"}, {"acme_malformed": source})
    reg = ProviderRegistry.discover()
    with pytest.raises(ProviderPermanentError, match=r"which is broken.*is invalid"):
        reg.kind("acme.thing")
    assert {p.name: p for p in reg.providers()}["acme"].broken
    with pytest.raises(ProviderPermanentError, match=r"Did you mean 'noop\.resource'"):
        reg.kind("noop.resourse")


def test_warmed_entry_points_give_the_same_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command server reads the entry points once before forking; ``discover`` then uses
    them and finds the same providers, none imported."""
    from stackyard.providers import registry as reg

    monkeypatch.setattr(reg, "_WARM", [])
    monkeypatch.setattr(reg, "_WARM_ORIGINS", {})
    cold_reg = reg.ProviderRegistry.discover()
    cold = sorted(cold_reg._slots)
    reg.warm_entry_points()
    assert reg._WARM and all(ep.group == reg.GROUP for ep in reg._WARM[0])
    warm_reg = reg.ProviderRegistry.discover()
    warm = sorted(warm_reg._slots)
    assert warm == cold and "postgres" in warm
    # Their origins were read with them, and are what a cold read finds.
    assert len(reg._WARM_ORIGINS) == len(reg._WARM[0])
    for name in warm:
        assert warm_reg._slots[name].origin == cold_reg._slots[name].origin
