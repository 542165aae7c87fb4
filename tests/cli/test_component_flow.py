"""The component flow end to end, through the real CLI in subprocesses.

Every test runs ``python -m stackyard.cli`` with its own ``STACKYARD_HOME`` against both
registry backends: the local OCI layout in the home, and a real registry (CNCF Distribution,
``docker-registry``, started once per session by ``_oci_registry``) with
``--registry REF --plain-http``. One copy of the library's ``local-volume`` is published per
backend by a module fixture and shared by the read-only tests; tests that change what is
published work on components of their own (pushed through the Registry API when the test is
about what the CLI does with them, not about publishing them).

No command may ever print a traceback.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Result, finished, ok
from _oci_registry import OciRegistry, oci_registry  # noqa: F401  (fixture)
from stackyard import library
from stackyard.components.keys import Keyring
from stackyard.components.package import build
from stackyard.components.registry import Registry, open_registry
from stackyard.model.component import load_component

pytestmark = pytest.mark.integration

NAME = "local-volume"
VERSION = "1.0.0"
#: The built-in library: every folder under ``stackyard/library``, at its manifest's version.
LIBRARY = tuple(sorted(library.names()))
VERSIONS = {name: load_component(library.path(name)).version for name in LIBRARY}
# Settings the CLI reads from the environment: the tests set what they need, nothing leaks in.
_SCRUB = ("STACKYARD_HOME", "STACKYARD_DATABASE_URL", "STACKYARD_SECRET_KEY", "STACKYARD_USER")


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUB and not k.startswith("STACKYARD_REGISTRY")
    }
    env.update(STACKYARD_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    return env


def _start(args: Sequence[str], home: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stackyard.cli", *args],
        cwd=cwd,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(args: Sequence[str], proc: subprocess.Popen[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return finished(args, proc.returncode, out, err)


def cli(*args: str, home: Path, cwd: Path | None = None) -> Result:
    """Run one command to the end (never a traceback)."""
    cwd = cwd or home
    return _finish(args, _start(args, home, cwd))


def cli_all(*runs: tuple[Sequence[str], Path]) -> list[Result]:
    """Run independent commands ``(args, home)`` side by side; results in order."""
    procs = [(args, _start(args, home, home)) for args, home in runs]
    return [_finish(args, proc) for args, proc in procs]


@dataclass
class Backend:
    """One registry backend, and the publisher's home with ``local-volume`` published in it."""

    kind: str
    home: Path
    work: Path
    server: OciRegistry | None
    published: dict[str, Any]
    source: Path

    @property
    def args(self) -> list[str]:
        """What to add to a registry command to reach this backend."""
        return ["--registry", self.server.ref, "--plain-http"] if self.server else []

    def open(self, home: Path | None = None) -> Registry:
        """The registry, in-process (for looking behind the CLI's back)."""
        return open_registry(
            self.server.ref if self.server else None,
            home=home or self.home,
            plain_http=True,
        )

    def fresh_home(self, where: Path, *, with_registry: bool = True) -> Path:
        """A second home with no keys; the local backend gets a copy of the registry."""
        home = where / f"home-{secrets.token_hex(3)}"
        home.mkdir(parents=True)
        if self.server is None and with_registry:
            shutil.copytree(self.home / "registry", home / "registry")
        return home

    def blob_file(self, digest: str) -> Path:
        """The stored file of blob ``digest`` (to tamper with)."""
        if self.server is not None:
            return self.server.blob_file(digest)
        return self.home / "registry" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def copy_component(src: Path, dest: Path, *, name: str | None = None, **changes: Any) -> Path:
    """Copy a component folder, renaming it and changing its version (metadata) if asked."""
    shutil.copytree(src, dest)
    doc = yaml.safe_load((dest / "component.yaml").read_text())
    if name:
        doc["metadata"]["name"] = name
    doc["metadata"].update(changes)
    (dest / "component.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def push_unattested(backend: Backend, folder: Path) -> str:
    """Push a build of ``folder`` straight through the Registry API: no pipeline, no attestation."""
    built = build(folder)
    with backend.open() as reg:
        pushed = reg.push(
            name=built.manifest.name,
            version=built.manifest.version,
            config=built.manifest_json,
            layer=built.archive,
            annotations={"org.opencontainers.image.version": built.manifest.version},
        )
    return pushed.digest


@pytest.fixture(scope="module", params=["local", "remote"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    server: OciRegistry | None = None
    if request.param == "remote":
        server = request.getfixturevalue("oci_registry")
    work = tmp_path_factory.mktemp(f"flow-{request.param}")
    home = work / "publisher"
    home.mkdir()
    source = copy_component(library.path(NAME), work / NAME)
    args = ["--registry", server.ref, "--plain-http"] if server else []
    result = ok(cli("component", "publish", str(source), *args, "-o", "json", home=home))
    yield Backend(request.param, home, work, server, result.json(), source)


# 1. publish, list, show, verify, pull, build


def test_publish_then_read_it_back(backend: Backend, tmp_path: Path) -> None:
    published = backend.published
    assert set(published) == {"name", "version", "digest"}
    assert (published["name"], published["version"]) == (NAME, VERSION)
    assert published["digest"].startswith("sha256:") and len(published["digest"]) == 71

    pulled = tmp_path / "pulled"
    listed, shown, verified, pull, first, second = cli_all(
        (["component", "list", *backend.args, "-o", "json"], backend.home),
        (["component", "show", NAME, *backend.args, "-o", "json"], backend.home),
        (["component", "verify", f"{NAME}@{VERSION}", *backend.args], backend.home),
        (["component", "pull", f"{NAME}@{VERSION}", "--to", str(pulled), *backend.args], backend.home),
        (["component", "build", str(backend.source), "--out", str(tmp_path / "a.tgz"), "-o", "json"], backend.home),
        (["component", "build", str(backend.source), "--out", str(tmp_path / "b.tgz"), "-o", "json"], backend.home),
    )  # fmt: skip

    rows = {row["name"]: row for row in ok(listed).json()}
    assert rows[NAME] == {
        "name": NAME,
        "latest": VERSION,
        "owner": "team-platform",
        "lifecycle": "production",
        "provides": "volume",
        "sla": {"availability": "99.0", "support": "best-effort", "rpo": "none", "rto": "1m"},
    }

    info = ok(shown).json()
    readme = (library.path(NAME) / "README.md").read_text()
    assert info["name"] == NAME and info["version"] == VERSION
    assert info["digest"] == published["digest"]
    assert info["readme"] == readme
    assert info["inputs"] == []
    assert info["outputs"] == ["path", "source"]
    assert info["versions"] == [VERSION]
    assert info["attestation"] == "verified"
    assert info["cost"] == {"monthly": "0.00", "currency": "USD"}

    ok(verified)
    assert published["digest"] in verified.out and "verified" in verified.out

    ok(pull)
    files = sorted(str(p.relative_to(pulled)) for p in pulled.rglob("*") if p.is_file())
    assert files == ["README.md", "component.yaml", "tests/basic.yaml"]
    for rel in files:
        assert (pulled / rel).read_bytes() == (backend.source / rel).read_bytes(), rel

    digest = ok(first).json()["digest"]
    assert ok(second).json()["digest"] == digest, "the build is not reproducible"
    rebuilt = ok(
        cli("component", "build", str(pulled), "--out", str(tmp_path / "c.tgz"), "-o", "json", home=backend.home)
    )  # fmt: skip
    assert rebuilt.json() == {"name": NAME, "version": VERSION, "digest": digest}
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "c.tgz").read_bytes()


# 2. a published version is immutable


def test_republish_same_version_is_refused(backend: Backend) -> None:
    with backend.open() as reg:
        tags = reg.tags(NAME)
        digest = reg.resolve(NAME, VERSION)
    result = cli("component", "publish", str(backend.source), *backend.args, home=backend.home)
    assert result.code == 2, str(result)
    assert "Version already published" in result.err
    with backend.open() as reg:
        assert reg.tags(NAME) == tags
        assert reg.resolve(NAME, VERSION) == digest


# 3. version rules: removing an output is a breaking change


def test_breaking_change_needs_a_major_release(backend: Backend) -> None:
    name = "volume-breaking"
    base = copy_component(backend.source, backend.work / name, name=name)
    push_unattested(backend, base)  # 1.0.0 with outputs source and path

    minor = copy_component(base, backend.work / f"{name}-1.1", version="1.1.0")
    major = copy_component(base, backend.work / f"{name}-2.0", version="2.0.0")
    for folder in (minor, major):  # drop the `path` output (the volume contract needs `source`)
        doc = yaml.safe_load((folder / "component.yaml").read_text())
        del doc["spec"]["outputs"]["path"]
        (folder / "component.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        test = folder / "tests" / "basic.yaml"
        test.write_text(test.read_text().replace("[source, path]", "[source]"))

    refused = cli("component", "publish", str(minor), *backend.args, home=backend.home)
    assert refused.code == 2, str(refused)
    assert "Breaking change in a non-major release" in refused.err
    assert "path" in refused.err

    ok(cli("component", "publish", str(major), *backend.args, home=backend.home))
    with backend.open() as reg:
        assert "1.1.0" not in reg.tags(name)
        assert {"1.0.0", "2.0.0"} <= set(reg.tags(name))


# 4. a build without an attestation


def test_verify_refuses_a_build_without_attestation(backend: Backend) -> None:
    name = "volume-unattested"
    digest = push_unattested(
        backend, copy_component(backend.source, backend.work / name, name=name)
    )
    result = cli("component", "verify", f"{name}@{VERSION}", *backend.args, home=backend.home)
    assert result.code == 9, str(result)  # a missing attestation has its own exit code
    assert "attestation" in result.err
    assert f"{name}@{VERSION}" in result.err and digest in result.err
    assert "verified" not in result.out


# 5. a signature by a key this home does not trust


def test_verify_from_another_home_needs_the_publishers_key(
    backend: Backend, tmp_path: Path
) -> None:
    key_id = Keyring(backend.home).key_id()
    other = backend.fresh_home(tmp_path)
    ref = f"{NAME}@{VERSION}"

    refused, exported = cli_all(
        (["component", "verify", ref, *backend.args], other),
        (["keys", "export"], backend.home),
    )
    assert refused.code == 8, str(refused)  # a failed verification
    assert key_id in refused.err and "not a trusted key" in refused.err
    assert "stackyard keys import" in refused.err  # the way out

    pem = tmp_path / "publisher.pem"
    pem.write_text(ok(exported).out)
    assert "PRIVATE" not in exported.out
    imported = ok(cli("keys", "import", str(pem), "--name", "publisher", home=other))
    assert key_id in imported.out

    verified = ok(cli("component", "verify", ref, *backend.args, "-o", "json", home=other))
    assert verified.json()["verified"] is True
    assert verified.json()["digest"] == backend.published["digest"]


# 6. a tampered blob is never unpacked


def test_pull_refuses_a_tampered_blob(backend: Backend, tmp_path: Path) -> None:
    name = "volume-tampered"
    push_unattested(backend, copy_component(backend.source, backend.work / name, name=name))
    with backend.open() as reg:
        _, manifest = reg.manifest(name, VERSION)
    layer = manifest["layers"][0]["digest"]
    blob = backend.blob_file(layer)
    data = blob.read_bytes()
    blob.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size: only the digest can tell

    # The remote backend caches verified blobs in the home: pull from one with an empty cache.
    home = backend.home if backend.server is None else backend.fresh_home(tmp_path)
    dest = tmp_path / "pulled"
    result = cli(
        "component", "pull", f"{name}@{VERSION}", "--to", str(dest), *backend.args, home=home
    )
    assert result.code != 0, str(result)
    assert layer in result.err and "hashes to sha256:" in result.err  # expected vs actual
    assert "tampered" in result.err
    assert not dest.exists()


# 7. component init scaffolds something publish accepts


def test_scaffolds_publish_as_generated(backend: Backend, tmp_path: Path) -> None:
    # amqp has no library component (a minimal scaffold); postgres starts from the library's
    # postgres-database, whose component test runs a real PostgreSQL server.
    types = ("amqp", "postgres")
    folders = {t: tmp_path / f"scaffold-{t}" for t in types}
    for result in cli_all(
        *((["component", "init", f"scaffold-{t}", "--type", t, "--to", str(folders[t])], backend.home) for t in types)
    ):  # fmt: skip
        ok(result)
    for t in types:
        assert {"component.yaml", "README.md", "tests"} <= {p.name for p in folders[t].iterdir()}
    published = cli_all(
        *((["component", "publish", str(folders[t]), *backend.args, "-o", "json"], backend.home) for t in types)
    )  # fmt: skip
    for t, result in zip(types, published, strict=True):
        assert ok(result).json() == {
            "name": f"scaffold-{t}",
            "version": "0.1.0",
            "digest": result.json()["digest"],
        }


# 8. deprecation


def test_deprecate_shows_in_show(backend: Backend) -> None:
    reason = "Use volume-breaking 2.0.0 instead."
    ref = f"{NAME}@{VERSION}"
    result = ok(
        cli("component", "deprecate", ref, "--reason", reason, *backend.args, home=backend.home)
    )
    assert "deprecated" in result.out
    info = ok(cli("component", "show", ref, *backend.args, "-o", "json", home=backend.home)).json()
    assert info["deprecated"]["reason"] == reason
    assert info["deprecated"]["version"] == VERSION
    assert info["attestation"] == "verified"  # the notice is beside the build, not in it
    assert info["digest"] == backend.published["digest"]


# 9. stackyard init (local layout only)


def test_init_publishes_the_library_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ok(cli("init", "-o", "json", home=home, cwd=tmp_path)).json()  # init creates it
    assert sorted(p["name"] for p in first["published"]) == list(LIBRARY)
    assert first["already_published"] == []

    second, listed = cli_all((["init", "-o", "json"], home), (["component", "list"], home))
    second_json = ok(second).json()
    assert second_json["published"] == []
    assert second_json["already_published"] == [f"{n}@{VERSIONS[n]}" for n in LIBRARY]
    assert second_json["key_id"] == first["key_id"]
    lines = ok(listed).out.splitlines()
    for name in LIBRARY:
        assert any(line.split()[:2] == [name, VERSIONS[name]] for line in lines), listed.out


# 10. bad input: a clear message and exit code, never a traceback


def test_bad_input_is_reported_not_raised(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    no_at, missing, bad_ref = cli_all(
        (["component", "verify", "nonsense"], home),
        (["component", "publish", "/nonexistent"], home),
        (["component", "list", "--registry", "bad ref with spaces"], home),
    )
    assert no_at.code == 2, str(no_at)
    assert "NAME@VERSION" in no_at.err and "nonsense" in no_at.err
    assert missing.code == 2, str(missing)
    assert "/nonexistent" in missing.err and "not found" in missing.err.lower()
    assert bad_ref.code != 0, str(bad_ref)
    assert "'bad ref with spaces' is not a registry reference" in bad_ref.err
    assert "HOST[:PORT]/NAMESPACE" in bad_ref.err


# Bad paths are diagnostics (exit 2), never "internal error: <OSError>".


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["keys", "import", "/nonexistent.pem"], id="keys-import-missing-file"),
        pytest.param(["component", "init", "thing", "--type", "amqp", "--to", "a-file"], id="init-to-a-file"),
    ],
)  # fmt: skip
def test_bad_paths_are_reported_not_raised(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    result = cli(*args, home=tmp_path)
    assert result.code == 2, str(result)


def test_pull_to_a_path_under_a_file_is_invalid_input(backend: Backend, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    dest = tmp_path / "a-file" / "pulled"
    result = cli("component", "pull", f"{NAME}@{VERSION}", "--to", str(dest), *backend.args, home=backend.home)  # fmt: skip
    assert result.code == 2, str(result)
