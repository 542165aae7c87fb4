"""The registry read side's pure rules: which manifests are component builds, tags that must
agree, source URLs without credentials, and the plain-HTTP setting (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stackyard.components.oci import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    EMPTY_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_LAYER_BYTES,
    NotAComponentError,
    TagMismatchError,
    check_build,
    check_config,
)
from stackyard.components.pipeline import as_source_url
from stackyard.components.registry import RemoteRegistry, open_registry
from stackyard.errors import InvalidInputError
from stackyard.settings import Settings

pytestmark = pytest.mark.unit

D = "sha256:" + "a" * 64


def _manifest(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": D, "size": 10},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": D, "size": 10}],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


IMAGE_CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 9}
FOREIGN = [
    (_manifest(artifactType="application/vnd.example.sbom.v1"), "an artifact of type"),
    (_manifest(artifactType=None, config=IMAGE_CONFIG), "a container image"),
    (_manifest(artifactType=None, config={"mediaType": EMPTY_MEDIA_TYPE, "digest": D}), "not a"),
    (
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        },
        "an image index",
    ),
    (_manifest(config={"mediaType": "application/json", "digest": D, "size": 1}), "whose config"),
    (_manifest(layers=[]), "with 0 layers"),
    (_manifest(layers=[{"mediaType": "application/x-tar", "digest": D, "size": 1}]), "layer"),
    (_manifest(config={"mediaType": CONFIG_MEDIA_TYPE, "digest": "md5:x", "size": 1}), "digest"),
    (
        _manifest(
            layers=[{"mediaType": LAYER_MEDIA_TYPE, "digest": D, "size": MAX_LAYER_BYTES + 1}]
        ),
        "claims",
    ),
    (_manifest(config={"mediaType": CONFIG_MEDIA_TYPE, "digest": D, "size": "10"}), "claims"),
]


@pytest.mark.parametrize(
    ("document", "says"),
    FOREIGN,
    ids=[
        "other-artifact-type",
        "container-image",
        "empty-config-artifact",
        "image-index",
        "wrong-config-type",
        "no-layer",
        "wrong-layer-type",
        "bad-digest",
        "layer-too-large",
        "size-not-a-number",
    ],
)
def test_what_is_not_a_component_build_is_named(document: dict[str, Any], says: str) -> None:
    with pytest.raises(NotAComponentError, match="not a stackyard component") as caught:
        check_build(document, reference="x@1.0.0", component="x")
    assert says in caught.value.message
    assert caught.value.exit_code == 2


def test_a_component_build_passes() -> None:
    config, layer = check_build(_manifest(), reference="x@1.0.0")
    assert config["mediaType"] == CONFIG_MEDIA_TYPE and layer["mediaType"] == LAYER_MEDIA_TYPE


@pytest.mark.parametrize(
    ("document", "version", "error"),
    [
        ({"metadata": {"name": "x", "version": "1.0.0"}}, "9.9.9", TagMismatchError),
        ({"metadata": {"name": "y", "version": "1.0.0"}}, "1.0.0", TagMismatchError),
        ({"metadata": {"name": "x"}}, "1.0.0", NotAComponentError),
        ({"architecture": "amd64"}, "1.0.0", NotAComponentError),
        (["not", "an", "object"], "1.0.0", NotAComponentError),
    ],
    ids=["other-version", "other-component", "no-version", "image-config", "not-an-object"],
)
def test_the_config_must_agree_with_its_tag(
    document: object, version: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_config(document, name="x", version=version, reference=f"x@{version}")


def test_a_build_asked_for_by_digest_has_no_tag_to_agree_with() -> None:
    doc = {"metadata": {"name": "x", "version": "1.0.0"}}
    assert check_config(doc, name="x", version=None, reference=f"x@{D}") == doc


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://ci:tok@git.example.com/p/c.git", "https://git.example.com/p/c.git"),
        ("https://git.example.com/p/c.git?private_token=t#x", "https://git.example.com/p/c.git"),
        ("git@github.com:org/repo.git", "ssh://git@github.com/org/repo.git"),
        ("ssh://git:pw@host.example:2222/r.git", "ssh://git@host.example:2222/r.git"),
        ("/srv/git/component", None),
        ("file:///srv/git/component", None),
        ("../component", None),
        ("stackyard library (local-volume)", None),
        ("C:\\src\\component", None),
    ],
    ids=[
        "https-with-token",
        "query-and-fragment",
        "scp-like",
        "ssh-password",
        "local-path",
        "file-url",
        "relative-path",
        "description",
        "windows-path",
    ],
)
def test_a_source_is_a_url_without_credentials_or_nothing(remote: str, url: str | None) -> None:
    assert as_source_url(remote) == url


@pytest.mark.parametrize(
    ("environ", "file", "plain"),
    [
        ({}, "", False),
        ({"STACKYARD_REGISTRY_PLAIN_HTTP": "1"}, "", True),
        ({"STACKYARD_REGISTRY_PLAIN_HTTP": "true"}, "", True),
        ({"STACKYARD_REGISTRY_PLAIN_HTTP": "0"}, "registry_plain_http: true\n", False),
        ({}, "registry_plain_http: true\n", True),
        ({}, "registry_plain_http: false\n", False),
    ],
    ids=["unset", "env-1", "env-true", "env-0-beats-file", "file-true", "file-false"],
)
def test_the_plain_http_setting(
    tmp_path: Path, environ: dict[str, str], file: str, plain: bool
) -> None:
    (tmp_path / "config.yaml").write_text(file)
    assert Settings.load(home=tmp_path, environ=environ).registry_plain_http is plain


def test_a_bad_plain_http_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="registry_plain_http"):
        Settings.load(home=tmp_path, environ={"STACKYARD_REGISTRY_PLAIN_HTTP": "maybe"})


@pytest.mark.parametrize(
    ("ref", "plain_http", "url"),
    [
        ("http://registry.example.com:5000/team", False, "http://registry.example.com:5000"),
        ("https://registry.example.com/team", True, "https://registry.example.com"),
        ("registry.example.com/team", True, "http://registry.example.com"),
        ("registry.example.com/team", False, "https://registry.example.com"),
    ],
    ids=["http-prefix", "https-prefix-wins", "setting", "default-tls"],
)
def test_a_scheme_on_the_registry_says_whether_to_use_tls(
    tmp_path: Path, ref: str, plain_http: bool, url: str
) -> None:
    reg = open_registry(ref, home=tmp_path, plain_http=plain_http)
    try:
        assert isinstance(reg, RemoteRegistry)
        assert reg.location.endswith("/team")
        assert str(reg._client.base_url).rstrip("/") == url
    finally:
        reg.close()
