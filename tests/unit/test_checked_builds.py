"""The checked-builds cache (issue 13): a build's schema check and a successful attestation
verification are remembered per digest under the home, and anything that changes what they
depend on, or a cache that cannot be trusted to be well-formed, means checking again.

Real builds (the library's ``local-volume``) in a real OCI layout under a temporary home,
attested with the home's own key. Each ``CheckedBuilds``/``Keyring`` is made afresh, as a
later command would: the cache file is what carries over.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackyard import library
from stackyard.components import attest, catalog
from stackyard.components.checked import CheckedBuilds
from stackyard.components.keys import Keyring
from stackyard.components.layout import LayoutRegistry
from stackyard.components.package import build
from stackyard.model import component_schema


@dataclass
class Home:
    path: Path
    registry: LayoutRegistry
    name: str
    version: str
    digest: str

    @property
    def cache(self) -> Path:
        return self.path / "keys" / "checked-builds"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A home with one published build, attested by the home's own (trusted) key."""
    built = build(library.path("local-volume"))
    name, version = built.manifest.name, built.manifest.version
    registry = LayoutRegistry(tmp_path / "registry")
    pushed = registry.push(
        name=name, version=version, config=built.manifest_json, layer=built.archive, annotations={}
    )
    ring = Keyring(tmp_path)
    ring.generate()
    statement = attest.Statement(
        name, version, pushed.digest, (attest.StageResult("validate", True, "ok"),)
    )
    registry.push_referrer(
        name=name,
        subject_digest=pushed.digest,
        subject_size=len(pushed.manifest),
        artifact_type=attest.ARTIFACT_TYPE,
        payload=attest.sign(statement, ring.signing_key()),
        payload_media_type=attest.ENVELOPE_MEDIA_TYPE,
        annotations={},
    )
    return Home(tmp_path, registry, name, version, pushed.digest)


def _count(monkeypatch: pytest.MonkeyPatch, module: Any, attr: str) -> list[int]:
    """Count the calls of ``module.attr`` (still calling it)."""
    calls = [0]
    real: Callable[..., Any] = getattr(module, attr)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, counted)
    return calls


def _read(home: Home) -> catalog.PublishedBuild:
    return catalog.read_build(
        home.registry, home.name, home.version, checked=CheckedBuilds(home.path)
    )


def _verify(home: Home) -> attest.Statement:
    return catalog.verify(
        home.registry, Keyring(home.path), home.name, home.version, digest=home.digest
    )


def test_a_build_that_passed_the_schema_check_is_not_checked_again(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = _count(monkeypatch, component_schema, "check_structure")
    first = _read(home)
    assert checks == [1]
    assert stat.S_IMODE(home.cache.stat().st_mode) == 0o600
    again = _read(home)  # a later command: a new cache object, the same file
    assert checks == [1], "the schema check ran again for a digest that passed"
    assert again.component == first.component


def test_a_corrupt_cache_is_ignored_and_rebuilt(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    _read(home)
    checks = _count(monkeypatch, component_schema, "check_structure")
    for garbage in (b"\x00not json", b'{"format": 1, "passed": ["zz"]}', b"[]", b""):
        home.cache.write_bytes(garbage)
        _read(home)
    assert checks == [4], "a corrupt cache was taken as a pass"
    assert json.loads(home.cache.read_bytes())["format"] == 1  # rewritten, well-formed


def test_a_verified_attestation_is_not_verified_again(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    signatures = _count(monkeypatch, attest, "verify")
    first = _verify(home)
    second = _verify(home)
    assert signatures == [1], "the signature was checked again though nothing changed"
    assert second == first


def test_a_tampered_cache_entry_means_verifying_again(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verify(home)
    doc = json.loads(home.cache.read_bytes())
    doc["passed"] = [("0" if k[0] != "0" else "1") + k[1:] for k in doc["passed"]]
    home.cache.write_text(json.dumps(doc))
    signatures = _count(monkeypatch, attest, "verify")
    _verify(home)
    assert signatures == [1]


def test_a_removed_trusted_key_refuses_the_build_despite_the_cache(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verify(home)
    ring = Keyring(home.path)
    [(kid, _)] = ring.trusted()
    ring.remove(kid)
    with pytest.raises(attest.UntrustedKeyError):
        _verify(home)
    # and trusting it again re-verifies rather than reviving the old entry blindly
    ring.import_public(ring.public_pem())
    signatures = _count(monkeypatch, attest, "verify")
    _verify(home)
    assert signatures == [1]


def test_an_added_trusted_key_means_verifying_again(
    home: Home, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _verify(home)
    other = Keyring(tmp_path / "other")
    other.generate()
    Keyring(home.path).import_public(other.public_pem(), name="other")
    signatures = _count(monkeypatch, attest, "verify")
    _verify(home)
    assert signatures == [1]


def test_a_failed_verification_is_not_cached(home: Home, tmp_path: Path) -> None:
    ring = Keyring(home.path)
    [(kid, _)] = ring.trusted()
    ring.remove(kid)
    for _ in range(2):
        with pytest.raises(attest.UntrustedKeyError):
            _verify(home)


def test_component_verify_always_checks_the_signature(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache serves resolution; the explicit ``stackyard component verify`` (``fresh``)
    checks the signature each time."""
    _verify(home)
    signatures = _count(monkeypatch, attest, "verify")
    catalog.verify(
        home.registry, Keyring(home.path), home.name, home.version, digest=home.digest, fresh=True
    )
    assert signatures == [1]


def test_a_process_parses_a_verified_statement_once(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy verifies each build at resolution and again for the policies' facts: the
    second read of the same envelope, with the same trusted keys, is answered from memory."""
    _verify(home)  # the signature checked, and the pass cached under the home
    reparsed = _count(monkeypatch, attest, "reverify")
    first, second = _verify(home), _verify(home)
    assert reparsed == [1]
    assert first == second
    # Another trusted key set is another fact: read and checked again.
    other = Keyring(home.path / "other")
    other.generate()
    Keyring(home.path).import_public(other.public_pem(), name="other")
    signatures = _count(monkeypatch, attest, "verify")
    _verify(home)
    assert signatures == [1]
