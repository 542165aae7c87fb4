"""The registry read side against crafted artifacts, through the real CLI.

What other tools put in a registry (an SBOM, a container image, an image index, a build whose
config has another media type, a tag that names another version than the build it points at,
a layer that inflates to 1 GiB) is pushed byte for byte: with raw HTTP per the OCI
distribution spec into a real registry (CNCF Distribution, ``docker-registry``), and as files
per the OCI image-layout spec into the local layout of a home. Then the commands a user runs
(``component show|pull|verify|list``, ``deploy``) must refuse what is not a stackyard
component (exit 2, never an internal error), skip it with a warning where they list or resolve,
and keep working for the good builds beside it.

The same file checks the other read-side rules: a remote registry without TLS is reached by
settings alone (``STACKYARD_REGISTRY_PLAIN_HTTP=1`` or an ``http://`` prefix), environments
resolve only attested builds unless their type opts out, and a build's annotations carry a
source URL (never a local path) and a layer title.
"""

from __future__ import annotations

import gzip
import io
import json
import secrets
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from _as_user import cli as run_cli
from _cli import Result, finished, ok
from _local_env import write_score
from _oci_registry import OciRegistry, oci_registry  # noqa: F401  (fixture)
from _platform import EXAMPLES
from stackyard import library
from stackyard.components.package import build

pytestmark = pytest.mark.integration

ARTIFACT = "application/vnd.stackyard.component.v1"
CONFIG = "application/vnd.stackyard.component.config.v1+json"
LAYER = "application/vnd.stackyard.component.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
NOT_OURS = "not a stackyard component"
GiB = 1 << 30

BARE = """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: bare}
spec:
  description: Volumes only; attested builds only (the default).
  bindings:
    - {type: volume, component: local-volume@^1}
"""
BARE_OPEN = """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: bare-open}
spec:
  description: Volumes only; unattested builds allowed.
  attestation: optional
  bindings:
    - {type: volume, component: local-volume@^1}
"""


# -- running the CLI ----------------------------------------------------------------------


def cli(home: Path, *args: str, **env: str) -> Result:
    """Run ``stackyard ARGS`` on ``home``; no run may print a traceback or an internal error."""
    done = run_cli(home, *args, **env)
    return finished(args, done.returncode, done.stdout, done.stderr)


def refused(run: Result, *needles: str) -> Result:
    """Exit 2, and every needle (case-insensitive) in what it printed."""
    assert run.code == 2, str(run)
    text = (run.out + run.err).lower()
    for needle in needles:
        assert needle.lower() in text, f"{needle!r} missing\n{run}"
    return run


# -- crafting artifacts -------------------------------------------------------------------


def digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Store:
    """Where crafted artifacts go: a real registry (raw HTTP) or the home's OCI layout (files)."""

    kind: str
    home: Path
    server: OciRegistry | None = None
    namespace: str = ""

    @property
    def ref(self) -> str:
        assert self.server is not None
        return f"{self.server.address}/{self.namespace}"

    @property
    def flags(self) -> tuple[str, ...]:
        """What the ``component`` commands take to reach this store (flags that work today)."""
        return ("--registry", self.ref, "--plain-http") if self.server else ()

    @property
    def settings(self) -> dict[str, str]:
        """The environment every other command reads the registry from."""
        if self.server is None:
            return {}
        return {"STACKYARD_REGISTRY": self.ref, "STACKYARD_REGISTRY_PLAIN_HTTP": "1"}

    # OCI distribution spec (remote) or image-layout spec (local), nothing of stackyard's.

    def put_blob(self, name: str, data: bytes) -> None:
        if self.server is None:
            folder = self.home / "registry" / "blobs" / "sha256"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / digest(data).removeprefix("sha256:")).write_bytes(data)
            return
        with httpx.Client(base_url=self.server.url, timeout=60) as http:
            start = http.post(f"/v2/{self.namespace}/{name}/blobs/uploads/")
            assert start.status_code == 202, start.text
            url = httpx.URL(start.headers["Location"]).copy_merge_params({"digest": digest(data)})
            done = http.put(
                str(url), content=data, headers={"Content-Type": "application/octet-stream"}
            )
            assert done.status_code == 201, done.text

    def put_manifest(self, name: str, tag: str, data: bytes, media_type: str) -> str:
        if self.server is None:
            self.put_blob(name, data)
            path = self.home / "registry" / "index.json"
            index = json.loads(path.read_text()) if path.exists() else {"schemaVersion": 2}
            ref = f"{name}:{tag}"
            entries = [
                e
                for e in index.get("manifests", [])
                if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") != ref
            ]
            entry = descriptor(media_type, data)
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
            index["manifests"] = [*entries, entry]
            index.setdefault("mediaType", INDEX)
            path.write_text(json.dumps(index))
            if not (self.home / "registry" / "oci-layout").exists():
                (self.home / "registry" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            return digest(data)
        with httpx.Client(base_url=self.server.url, timeout=60) as http:
            put = http.put(
                f"/v2/{self.namespace}/{name}/manifests/{tag}",
                content=data,
                headers={"Content-Type": media_type},
            )
            assert put.status_code == 201, put.text
        return digest(data)

    def manifest_of(self, name: str, tag: str) -> bytes:
        """The exact manifest bytes at ``name:tag`` (to point another tag at them)."""
        if self.server is None:
            index = json.loads((self.home / "registry" / "index.json").read_text())
            ref = f"{name}:{tag}"
            for e in index["manifests"]:
                if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref:
                    return (
                        self.home
                        / "registry"
                        / "blobs"
                        / "sha256"
                        / e["digest"].removeprefix("sha256:")
                    ).read_bytes()
            raise AssertionError(f"no {ref}")
        got = httpx.get(
            f"{self.server.url}/v2/{self.namespace}/{name}/manifests/{tag}",
            headers={"Accept": MANIFEST},
            timeout=60,
        )
        assert got.status_code == 200, got.text
        return got.content

    def retag(self, name: str, tag: str, to: str) -> None:
        """Point tag ``to`` at the manifest of ``tag`` (what ``oras tag`` does)."""
        self.put_manifest(name, to, self.manifest_of(name, tag), MANIFEST)

    def push_image(
        self, name: str, tag: str, *, layer: bytes, layer_type: str, **fields: Any
    ) -> str:
        """An image manifest: ``fields`` give ``artifactType`` and the config (bytes, type)."""
        config = fields.pop("config", b"{}")
        config_type = fields.pop("config_type", EMPTY)
        for blob in (config, layer):
            self.put_blob(name, blob)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(config_type, config),
            "layers": [descriptor(layer_type, layer)],
            **fields,
        }
        return self.put_manifest(name, tag, encode(manifest), MANIFEST)

    def push_build(self, name: str, version: str, *, layer: bytes | None = None) -> str:
        """A stackyard build of ``local-volume`` renamed ``name`` at ``version`` (not attested)."""
        folder = self.home.parent / f"src-{name}-{version}"
        if not folder.exists():
            copy_component(folder, name=name, version=version)
        built = build(folder)
        return self.push_image(
            name,
            version.replace("+", "_"),
            config=built.manifest_json,
            config_type=CONFIG,
            layer=built.archive if layer is None else layer,
            layer_type=LAYER,
            artifactType=ARTIFACT,
            annotations={"org.opencontainers.image.version": version},
        )


def copy_component(dest: Path, *, name: str = "local-volume", version: str = "1.0.0") -> Path:
    import shutil

    shutil.copytree(library.path("local-volume"), dest)
    doc = yaml.safe_load((dest / "component.yaml").read_text())
    doc["metadata"].update(name=name, version=version)
    (dest / "component.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def container_layer() -> bytes:
    """A container image's layer: a tar+gzip of ``etc/hostname``."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"box\n\n"))
    return buf.getvalue()


def push_foreign(store: Store, kind: str, name: str, tag: str) -> None:
    """Push one kind of artifact that is not a stackyard component at ``name:tag``."""
    if kind == "sbom":  # another tool's artifact (oras push --artifact-type ...)
        store.push_image(
            name,
            tag,
            layer=b'{"spdxVersion":"SPDX-2.3"}',
            layer_type="application/spdx+json",
            artifactType="application/vnd.example.sbom.v1",
        )
    elif kind in ("image", "index"):  # a plain container image (docker/skopeo), or its index
        layer = container_layer()
        config = encode(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest(gzip.decompress(layer))]},
            }
        )
        image = store.push_image(
            name,
            tag if kind == "image" else "image-of-index",
            config=config,
            config_type="application/vnd.oci.image.config.v1+json",
            layer=layer,
            layer_type="application/vnd.oci.image.layer.v1.tar+gzip",
        )
        if kind == "index":
            size = len(store.manifest_of(name, "image-of-index"))
            index = {
                "schemaVersion": 2,
                "mediaType": INDEX,
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "digest": image,
                        "size": size,
                        "platform": {"architecture": "amd64", "os": "linux"},
                    }
                ],
            }
            store.put_manifest(name, tag, encode(index), INDEX)
    elif kind == "config-type":  # our artifactType, our config, but another config media type
        folder = copy_component(store.home.parent / f"src-{name}-{kind}", name=name, version=tag)
        built = build(folder)
        store.push_image(
            name,
            tag,
            config=built.manifest_json,
            config_type="application/json",
            layer=built.archive,
            layer_type=LAYER,
            artifactType=ARTIFACT,
        )
    else:
        raise AssertionError(kind)


def gzip_bomb() -> bytes:
    """A tar+gzip of ~1 MiB that inflates to 1 GiB: one 1 GiB member of zeros, then a
    README.md, made in a stream (never 1 GiB in memory)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = []
    filler = tarfile.TarInfo("filler.bin")
    filler.size = GiB
    parts.append(z.compress(filler.tobuf(format=tarfile.PAX_FORMAT)))
    zeros = bytes(1 << 20)
    for _ in range(GiB >> 20):
        parts.append(z.compress(zeros))
    readme = tarfile.TarInfo("README.md")
    text = b"# inflated\n"
    readme.size = len(text)
    parts.append(z.compress(readme.tobuf(format=tarfile.PAX_FORMAT)))
    parts.append(z.compress(text + bytes(512 - len(text)) + bytes(1024)))
    parts.append(z.flush())
    return b"".join(parts)


# -- homes and stores ---------------------------------------------------------------------


def _store(request: pytest.FixtureRequest, home: Path) -> Store:
    """The home's local layout, or a fresh namespace of the session's real registry."""
    if request.param == "layout":
        return Store("layout", home)
    server = request.getfixturevalue("oci_registry")
    return Store("remote", home, server, f"rs-{secrets.token_hex(4)}")


@pytest.fixture(params=["layout", "remote"])
def store(request: pytest.FixtureRequest, home: Path) -> Store:
    """An empty registry of either kind, and a home (without a state database) to run in."""
    return _store(request, home)


@pytest.fixture(params=["layout", "remote"])
def library_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A home made by ``stackyard init`` (library published and attested) whose registry is
    the local layout, or a real registry named by settings alone."""
    home = tmp_path / "home"
    home.mkdir()
    target = _store(request, home)
    ok(cli(home, "init", **target.settings))
    return target


def apply_platform(target: Store, folder: Path, **documents: str) -> None:
    """Write the example teams and ``documents`` (file stem to YAML) into ``folder``, and apply
    all that is there."""
    folder.mkdir(exist_ok=True)
    (folder / "teams.yaml").write_text((EXAMPLES / "platform" / "teams.yaml").read_text())
    for stem, text in documents.items():
        (folder / f"{stem}.yaml").write_text(text)
    ok(cli(target.home, "platform", "apply", str(folder), "--yes", **target.settings))


def create_env(target: Store, env: str, env_type: str) -> None:
    """Create ``env``, of ``env_type``, owned by ``team-platform``."""
    owner = ("--owner", "team-platform")
    ok(cli(target.home, "env", "create", env, "--type", env_type, *owner, **target.settings))


def saver_score(folder: Path) -> Path:
    """The Score file of ``saver``, a workload that needs a volume."""
    program = "import time\nprint('up', flush=True)\ntime.sleep(3600)\n"
    return write_score(folder, "saver", program, resources={"data": "volume"})


@pytest.fixture
def bare_env(library_store: Store, tmp_path: Path) -> Iterator[tuple[Store, str, Path]]:
    """``library_store`` with the ``bare`` type applied (from ``tmp_path / "platform"``), an
    environment of that type, and a Score file of a workload that needs a volume (under
    ``tmp_path / "app"``); destroyed after."""
    target = library_store
    apply_platform(target, tmp_path / "platform", types=BARE)
    env = f"t{secrets.token_hex(4)}"
    create_env(target, env, "bare")
    score = saver_score(tmp_path / "app")
    try:
        yield target, env, score
    finally:
        cli(target.home, "env", "destroy", env, "--yes", **target.settings)


def plan(target: Store, env: str, score: Path) -> Result:
    return cli(
        target.home,
        "deploy",
        str(score),
        "--env",
        env,
        "--plan-only",
        "--yes",
        "-o",
        "json",
        **target.settings,
    )


def pinned(run: Result) -> str:
    lock = ok(run).json()["lock"]
    (pin,) = [p for uid, p in lock.items() if uid.startswith("volume.")]
    return f"{pin['component']}@{pin['version']}"


def warnings_of(run: Result) -> str:
    return " ".join(w.get("detail", "") + w.get("summary", "") for w in run.json()["warnings"])


# -- 1. what is not ours ------------------------------------------------------------------

KINDS = ["sbom", "image", "index", "config-type"]


@pytest.mark.parametrize("kind", KINDS)
def test_show_pull_verify_and_list_refuse_what_is_not_a_component(
    store: Store, kind: str, tmp_path: Path
) -> None:
    name = f"foreign-{kind}"
    push_foreign(store, kind, name, "1.0.0")
    for args in (
        ("component", "show", name),
        ("component", "show", f"{name}@1.0.0"),
        ("component", "pull", f"{name}@1.0.0", "--to", str(tmp_path / "out")),
        ("component", "verify", f"{name}@1.0.0"),
    ):
        refused(cli(store.home, *args, *store.flags), NOT_OURS, name)
    assert not (tmp_path / "out").exists()
    listed = ok(cli(store.home, "component", "list", *store.flags, "-o", "json"))
    assert name not in [row["name"] for row in listed.json()]
    assert NOT_OURS in listed.err and name in listed.err  # skipped, with a warning


def test_a_foreign_tag_beside_good_builds_is_skipped(store: Store) -> None:
    store.push_build("shelf", "1.0.0")
    push_foreign(store, "image", "shelf", "1.5.0")
    listed = ok(cli(store.home, "component", "list", *store.flags, "-o", "json"))
    assert {r["name"]: r["latest"] for r in listed.json()}["shelf"] == "1.0.0"
    assert "shelf@1.5.0" in listed.err and NOT_OURS in listed.err
    shown = ok(cli(store.home, "component", "show", "shelf", *store.flags, "-o", "json"))
    assert shown.json()["version"] == "1.0.0"
    assert shown.json()["versions"] == ["1.0.0"]
    refused(cli(store.home, "component", "show", "shelf@1.5.0", *store.flags), NOT_OURS)


def test_deploy_resolves_past_a_foreign_tag(bare_env: tuple[Store, str, Path]) -> None:
    target, env, score = bare_env
    push_foreign(target, "image", "local-volume", "1.5.0")  # in the binding's range ^1
    run = plan(target, env, score)
    assert pinned(run) == "local-volume@1.0.0"
    assert "local-volume@1.5.0" in warnings_of(run) and NOT_OURS in warnings_of(run)


# -- 2. a tag agrees with the version inside ----------------------------------------------


def test_a_tag_must_agree_with_the_version_inside(store: Store, tmp_path: Path) -> None:
    store.push_build("postgres-database", "1.0.0")
    store.retag("postgres-database", "1.0.0", "9.9.9")
    refused(
        cli(
            store.home,
            "component",
            "pull",
            "postgres-database@9.9.9",
            "--to",
            str(tmp_path / "out"),
            *store.flags,
        ),
        "postgres-database",
        "9.9.9",
        "1.0.0",
    )
    assert not (tmp_path / "out").exists()
    listed = ok(cli(store.home, "component", "list", *store.flags, "-o", "json"))
    assert {r["name"]: r["latest"] for r in listed.json()}["postgres-database"] == "1.0.0"
    assert "postgres-database@9.9.9" in listed.err
    ok(
        cli(
            store.home,
            "component",
            "pull",
            "postgres-database@1.0.0",
            "--to",
            str(tmp_path / "good"),
            *store.flags,
        )
    )


def test_deploy_skips_a_tag_that_names_another_version(bare_env: tuple[Store, str, Path]) -> None:
    target, env, score = bare_env
    target.retag("local-volume", "1.0.0", "1.9.9")
    run = plan(target, env, score)
    assert pinned(run) == "local-volume@1.0.0"
    assert "local-volume@1.9.9" in warnings_of(run)


# -- 3. decompression is bounded ----------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


def test_a_gzip_bomb_is_refused_without_inflating_it(
    store: Store, bomb: bytes, tmp_path: Path
) -> None:
    store.push_build("bomb-volume", "1.0.0", layer=bomb)
    for args in (
        ("component", "show", "bomb-volume"),
        ("component", "pull", "bomb-volume@1.0.0", "--to", str(tmp_path / "out")),
    ):
        refused(cli(store.home, *args, *store.flags), "too large")
    assert not (tmp_path / "out").exists()


# -- 4. a plain-HTTP registry by settings alone -------------------------------------------


def test_a_plain_http_registry_by_settings_alone(
    oci_registry: OciRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    """init, platform apply, env create and a deploy that runs, with no flag anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    ref = f"{oci_registry.address}/rs-{secrets.token_hex(4)}"
    by_prefix = {"STACKYARD_REGISTRY": f"http://{ref}"}
    ok(cli(home, "init", **by_prefix))
    listed = ok(cli(home, "component", "list", "-o", "json", **by_prefix))
    assert "local-volume" in [r["name"] for r in listed.json()]
    target = Store("remote", home, oci_registry, ref.split("/", 1)[1])
    apply_platform(target, tmp_path / "platform", types=BARE)
    score = saver_score(tmp_path / "app")
    env = f"t{secrets.token_hex(4)}"
    try:
        create_env(target, env, "bare")
        push_foreign(target, "sbom", "local-volume", "1.7.0")  # and a foreign tag in range
        run = ok(
            cli(home, "deploy", str(score), "--env", env, "--yes", "-o", "json", **target.settings)
        )
        assert pinned(run) == "local-volume@1.0.0"
        assert run.json()["workloads"]["saver"]["state"] in ("running", "ready")
    finally:
        cli(home, "env", "destroy", env, "--yes", **target.settings)


def test_quickstart_on_a_plain_http_registry(
    oci_registry: OciRegistry,  # noqa: F811
    home: Path,
) -> None:
    """The whole default road (library published attested, dev with its core, the hello app)
    on a registry without TLS, named by the two settings."""
    settings = {
        "STACKYARD_REGISTRY": f"{oci_registry.address}/rs-{secrets.token_hex(4)}",
        "STACKYARD_REGISTRY_PLAIN_HTTP": "1",
    }
    try:
        started = ok(cli(home, "quickstart", "-o", "json", **settings)).json()
        assert started["url"].startswith("http://127.0.0.1:")
        assert started["deployment"]["status"] not in ("failed", "cancelled")
        listed = ok(cli(home, "component", "list", "-o", "json", **settings)).json()
        assert {"local-volume", "postgres-database", "redis-cache"} <= {r["name"] for r in listed}
    finally:
        for env in ("quickstart", "dev"):
            cli(home, "env", "destroy", env, "--yes", **settings)


def test_a_registry_without_tls_names_the_setting(
    oci_registry: OciRegistry,  # noqa: F811
    home: Path,
) -> None:
    """Without the setting, the error says which setting to use, not a flag deploy lacks."""
    run = cli(home, "init", STACKYARD_REGISTRY=f"{oci_registry.address}/rs-{secrets.token_hex(4)}")
    assert run.code != 0
    assert "STACKYARD_REGISTRY_PLAIN_HTTP" in run.err, str(run)
    assert "--plain-http" not in run.err, str(run)


# -- 5. attested builds only, unless the type opts out ------------------------------------


def test_only_attested_builds_resolve_unless_the_type_opts_out(
    bare_env: tuple[Store, str, Path],
) -> None:
    target, env, score = bare_env
    target.push_build("local-volume", "1.1.0")  # a build the pipeline never attested
    run = plan(target, env, score)
    assert pinned(run) == "local-volume@1.0.0"
    assert "local-volume@1.1.0" in warnings_of(run) and "attest" in warnings_of(run)

    # The type opts out: the newest build in range, attested or not.
    apply_platform(target, score.parent.parent / "platform", types=BARE, open=BARE_OPEN)
    open_env = f"t{secrets.token_hex(4)}"
    create_env(target, open_env, "bare-open")
    try:
        assert pinned(plan(target, open_env, score)) == "local-volume@1.1.0"
    finally:
        cli(target.home, "env", "destroy", open_env, "--yes", **target.settings)

    # No key is trusted any more: nothing in range is attested, and the diagnostic says what to do.
    for key in (target.home / "keys" / "trusted").iterdir():
        key.unlink()
    none = refused(plan(target, env, score), "local-volume", "attest", "attestation: optional")
    assert "stackyard keys import" in none.out + none.err


# -- 6. what a build's annotations say ----------------------------------------------------


def test_annotations_hold_a_source_url_and_a_layer_title(store: Store, tmp_path: Path) -> None:
    with_git = copy_component(tmp_path / "with-git", name="noted-volume")
    subprocess.run(["git", "init", "-q", str(with_git)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(with_git),
            "remote",
            "add",
            "origin",
            "https://ci-bot:s3cret-token@git.example.com/platform/noted-volume.git",
        ],
        check=True,
    )
    without = copy_component(tmp_path / "plain", name="plain-volume")
    for folder in (with_git, without):
        ok(cli(store.home, "component", "publish", str(folder), *store.flags))
    noted = json.loads(store.manifest_of("noted-volume", "1.0.0"))
    assert noted["annotations"]["org.opencontainers.image.source"] == (
        "https://git.example.com/platform/noted-volume.git"
    )
    plain = json.loads(store.manifest_of("plain-volume", "1.0.0"))
    assert "org.opencontainers.image.source" not in plain["annotations"]
    for manifest in (noted, plain):
        (layer,) = manifest["layers"]
        assert layer["annotations"]["org.opencontainers.image.title"].endswith(".tar.gz")
    assert "s3cret" not in json.dumps(noted)


def test_the_library_build_names_no_local_path(library_store: Store) -> None:
    manifest = json.loads(library_store.manifest_of("local-volume", "1.0.0"))
    source = manifest["annotations"].get("org.opencontainers.image.source")
    assert source is None or source.startswith(("https://", "http://", "ssh://", "git://")), source
    assert str(library.path("local-volume")) not in json.dumps(manifest)
