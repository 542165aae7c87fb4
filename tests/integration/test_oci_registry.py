"""The artifact repository against the local OCI layout and a real registry (CNCF Distribution).

The remote backend runs against the Debian package ``docker-registry`` (Distribution 2.8,
which has no referrers API, so referrers go through the fallback tag scheme), started on
loopback by a session fixture. A second instance with htpasswd basic auth checks credentials.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from _services import require_or_skip
from stackyard.components.oci import ANNOTATION_VERSION, ARTIFACT_TYPE, referrers_tag
from stackyard.components.registry import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    DigestMismatchError,
    ImmutableTagError,
    InvalidReferenceError,
    LayoutRegistry,
    NotFoundError,
    Registry,
    RegistryAuthError,
    RemoteRegistry,
    open_registry,
)

pytestmark = pytest.mark.integration

BINARY = "/usr/bin/docker-registry"
ATTESTATION = "application/vnd.stackyard.attestation.v1"
ENVELOPE = "application/vnd.dsse.envelope.v1+json"


@dataclass
class Distribution:
    """A running docker-registry: its address and its storage directory."""

    address: str
    storage: Path

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, *, auth: str = "") -> Iterator[Distribution]:
    binary = shutil.which("docker-registry") or BINARY
    if not Path(binary).exists():
        require_or_skip("docker-registry is not installed (apt-get install docker-registry)")
        return
    port = _free_port()
    storage = root / "storage"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: {secrets.token_hex(16)}}}\n" + auth
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                require_or_skip(
                    "docker-registry did not start: " + (root / "registry.log").read_text()[-500:]
                )
                return
            time.sleep(0.05)
        yield Distribution(f"127.0.0.1:{port}", storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """An anonymous docker-registry on loopback, for the whole session."""
    yield from _start(tmp_path_factory.mktemp("distribution"))


@pytest.fixture(scope="session")
def distribution_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """A docker-registry that requires basic auth (alice / s3cret-pw)."""
    root = tmp_path_factory.mktemp("distribution-auth")
    hashed = _bcrypt("s3cret-pw")
    if hashed is None:  # a missing test tool, not a missing service: skip even in CI
        pytest.skip("no bcrypt implementation (crypt module) to write an htpasswd file")
    (root / "htpasswd").write_text(f"alice:{hashed}\n")
    yield from _start(
        root, auth=f"auth: {{htpasswd: {{realm: test, path: {root / 'htpasswd'}}}}}\n"
    )


def _bcrypt(password: str) -> str | None:
    """A bcrypt hash for htpasswd, from the C library's crypt() (the only bcrypt at hand)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        except (ImportError, ValueError, OSError):
            return None
    return hashed if hashed and hashed.startswith("$2") else None


@dataclass
class Backend:
    """One registry under test, with a way to corrupt a stored blob behind its back."""

    registry: Registry
    tamper: Callable[[str], None]
    cache: Path
    raw_tags: Callable[[str], list[str]]


def _flip(path: Path) -> None:
    """Corrupt ``path`` in place, keeping its size (so only the digest can tell).

    A manifest stays valid JSON (Distribution parses manifests before serving them): its
    owner changes. Any other blob gets its first byte flipped.
    """
    data = path.read_bytes()
    if b'"team-data"' in data:
        path.write_bytes(data.replace(b'"team-data"', b'"team-evil"'))
        return
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])


@pytest.fixture(params=["local", "remote"])
def backend(request: pytest.FixtureRequest, home: Path) -> Iterator[Backend]:
    if request.param == "local":
        layout = open_registry(None, home=home)
        assert isinstance(layout, LayoutRegistry)
        yield Backend(
            layout,
            lambda digest: _flip(layout.root / "blobs/sha256" / digest.removeprefix("sha256:")),
            home / "cache",
            layout.tags,
        )
        return
    dist: Distribution = request.getfixturevalue("distribution")
    namespace = f"t{secrets.token_hex(4)}"  # one namespace per test: tests never share tags
    remote = open_registry(f"{dist.address}/{namespace}", home=home, plain_http=True)
    assert isinstance(remote, RemoteRegistry)

    def raw_tags(name: str) -> list[str]:
        url = f"http://{dist.address}/v2/{namespace}/{name}/tags/list"
        return list(httpx.get(url).json()["tags"])

    with remote:
        yield Backend(remote, lambda d: _flip(dist.blob_file(d)), home / "cache", raw_tags)


def _push(registry: Registry, version: str = "1.4.2", *, layer: bytes = b"archive-bytes") -> tuple:
    config = b'{"name":"postgres-database","version":"%s"}' % version.encode()
    pushed = registry.push(
        name="postgres-database",
        version=version,
        config=config,
        layer=layer,
        annotations={
            ANNOTATION_VERSION: version,
            "org.opencontainers.image.created": "2026-11-22T00:00:00Z",
            "org.opencontainers.image.source": "https://example.com/components",
            "dev.stackyard.owner": "team-data",
            "dev.stackyard.lifecycle": "production",
        },
    )
    return pushed, config, layer


def _files(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_push_list_pull_verify_and_referrers(backend: Backend) -> None:
    reg = backend.registry
    pushed, config, layer = _push(reg)
    _push(reg, "1.5.0-rc.1+build.7", layer=b"another archive")

    assert sorted(reg.tags("postgres-database")) == ["1.4.2", "1.5.0-rc.1+build.7"]
    assert reg.names() == ["postgres-database"]
    assert reg.resolve("postgres-database", "1.4.2") == pushed.digest

    digest, manifest = reg.manifest("postgres-database", "1.4.2")
    assert digest == pushed.digest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [entry["mediaType"] for entry in manifest["layers"]] == [LAYER_MEDIA_TYPE]
    assert manifest["annotations"]["dev.stackyard.owner"] == "team-data"
    assert reg.blob("postgres-database", manifest["config"]["digest"]) == config
    assert reg.blob("postgres-database", manifest["layers"][0]["digest"]) == layer
    assert reg.manifest("postgres-database", pushed.digest) == (digest, manifest)

    assert reg.referrers("postgres-database", digest) == []
    ref = reg.push_referrer(
        name="postgres-database",
        subject_digest=digest,
        subject_size=len(pushed.manifest),
        artifact_type=ATTESTATION,
        payload=b'{"payloadType":"x","payload":"","signatures":[]}',
        payload_media_type=ENVELOPE,
        annotations={"org.opencontainers.image.created": "2026-11-22T00:00:01Z"},
    )
    other = reg.push_referrer(
        name="postgres-database",
        subject_digest=digest,
        subject_size=len(pushed.manifest),
        artifact_type="application/vnd.example.sbom",
        payload=b"{}",
        payload_media_type="application/json",
        annotations={},
    )
    found = reg.referrers("postgres-database", digest)
    assert [d["digest"] for d in found] == [ref, other]
    assert found[0]["artifactType"] == ATTESTATION
    assert found[0]["annotations"] == {"org.opencontainers.image.created": "2026-11-22T00:00:01Z"}
    assert [d["digest"] for d in reg.referrers("postgres-database", digest, ATTESTATION)] == [ref]

    _, attestation = reg.manifest("postgres-database", ref)
    assert attestation["subject"]["digest"] == digest
    envelope = reg.blob("postgres-database", attestation["layers"][0]["digest"])
    assert envelope.startswith(b'{"payloadType"')
    # The referrers index is not a version.
    assert sorted(reg.tags("postgres-database")) == ["1.4.2", "1.5.0-rc.1+build.7"]
    if isinstance(reg, RemoteRegistry):  # Distribution 2.8 has no referrers API: fallback tag
        assert referrers_tag(digest) in backend.raw_tags("postgres-database")


def test_a_published_version_is_immutable(backend: Backend) -> None:
    pushed, _, _ = _push(backend.registry)
    assert _push(backend.registry)[0] == pushed  # the same build again: a no-op
    with pytest.raises(ImmutableTagError, match=r"postgres-database@1\.4\.2 is already published"):
        _push(backend.registry, layer=b"different archive")
    assert backend.registry.resolve("postgres-database", "1.4.2") == pushed.digest


def test_a_missing_version_is_not_found(backend: Backend) -> None:
    _push(backend.registry)
    with pytest.raises(NotFoundError, match=r"postgres-database@9\.9\.9"):
        backend.registry.resolve("postgres-database", "9.9.9")
    assert backend.registry.tags("redis-cache") == []


def test_a_tampered_blob_is_refused_and_nothing_is_written(backend: Backend) -> None:
    pushed, _, _ = _push(backend.registry)
    _, manifest = backend.registry.manifest("postgres-database", "1.4.2")
    layer = manifest["layers"][0]["digest"]
    backend.tamper(layer)
    before = _files(backend.cache)

    with pytest.raises(DigestMismatchError) as caught:
        backend.registry.blob("postgres-database", layer)

    assert caught.value.digest == layer
    assert f"Refused content of {layer}" in str(caught.value)
    assert _files(backend.cache) == before
    assert layer.removeprefix("sha256:") not in before
    assert pushed.digest  # the manifest itself is intact and still verifies
    assert backend.registry.manifest("postgres-database", pushed.digest)[0] == pushed.digest


def test_a_tampered_manifest_is_refused(backend: Backend) -> None:
    pushed, _, _ = _push(backend.registry)
    backend.tamper(pushed.digest)
    before = _files(backend.cache)
    with pytest.raises(DigestMismatchError, match=pushed.digest):
        backend.registry.manifest("postgres-database", "1.4.2")
    assert _files(backend.cache) == before


def test_basic_auth(distribution_auth: Distribution, home: Path) -> None:
    ref = f"{distribution_auth.address}/team"
    env = {"STACKYARD_REGISTRY_USERNAME": "alice", "STACKYARD_REGISTRY_PASSWORD": "s3cret-pw"}
    with open_registry(ref, home=home, plain_http=True, environ=env) as reg:
        _, _, layer = _push(reg)
        _, manifest = reg.manifest("postgres-database", "1.4.2")
        assert reg.blob("postgres-database", manifest["layers"][0]["digest"]) == layer
        assert reg.tags("postgres-database") == ["1.4.2"]

    wrong = {"STACKYARD_REGISTRY_USERNAME": "alice", "STACKYARD_REGISTRY_PASSWORD": "hunter2-x"}
    for environ in (wrong, {}):
        reg = open_registry(ref, home=home, plain_http=True, environ=environ)
        with pytest.raises(RegistryAuthError) as caught:
            reg.resolve("postgres-database", "1.4.2")
        reg.close()
        assert "hunter2" not in str(caught.value) and "hunter2" not in (caught.value.hint or "")
        assert "STACKYARD_REGISTRY_USERNAME" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "ref",
    # http:// and https:// choose plain HTTP or TLS (open_registry); other schemes are refused
    ["registry.example.com", "ftp://registry.example.com/ns", "host/UPPER", "host:port/ns"],
    ids=["no-namespace", "scheme", "uppercase-namespace", "bad-port"],
)
def test_a_bad_registry_reference_is_refused(ref: str, home: Path) -> None:
    with pytest.raises(InvalidReferenceError, match="is not a registry reference"):
        open_registry(ref, home=home)


def test_an_unreachable_registry_fails_with_a_clear_error(home: Path) -> None:
    from stackyard.components.registry import RegistryUnavailableError

    reg = open_registry(f"127.0.0.1:{_free_port()}/ns", home=home, plain_http=True)
    with reg, pytest.raises(RegistryUnavailableError, match="Cannot reach the registry"):
        reg.tags("postgres-database")
