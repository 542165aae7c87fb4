"""Canonical JSON: one module, and every digest stackyard persists or signs keeps its bytes.

The pinned values were computed with the code before ``stackyard.canonical`` existed (each call
site had its own ``json.dumps``). A digest that changes breaks data already written: release
ids, platform document digests, the decision log's input hashes, the audit chain, workload
digests of running workloads, plan graph digests, OCI manifests and configs, and signatures.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import types
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stackyard import canonical

pytestmark = pytest.mark.unit

#: Unsorted keys, non-ASCII text, floats, null and booleans.
DOC = {
    "zeta": [1, 2.5, None, True],
    "alpha": {"name": "café", "kanji": "日本", "b": 1, "a": 0},
    "when": "2024",
}
#: Values JSON has no type for, rendered with ``str`` where a call site allows it.
ODD = {"b": datetime.date(2024, 1, 2), "a": Path("/tmp/x"), "n": "é"}


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


# -- the module ----------------------------------------------------------------------------------


def test_canonical_bytes_sort_keys_drop_spaces_and_keep_utf8() -> None:
    assert (
        canonical.canonical_bytes({"b": "é", "a": [1, None]}) == '{"a":[1,null],"b":"é"}'.encode()
    )


def test_ascii_only_escapes_like_json_dumps() -> None:
    assert canonical.canonical_json({"n": "é"}, ascii_only=True) == '{"n":"\\u00e9"}'


def test_default_renders_other_values_and_without_it_they_are_refused() -> None:
    assert canonical.canonical_json({"d": datetime.date(2024, 1, 2)}, default=str) == (
        '{"d":"2024-01-02"}'
    )
    with pytest.raises(TypeError):
        canonical.canonical_json({"d": datetime.date(2024, 1, 2)})


def test_nan_is_refused_on_request() -> None:
    assert canonical.canonical_json([float("nan")]) == "[NaN]"
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical.canonical_bytes([float("nan")], allow_nan=False)


def test_spaced_keeps_json_dumps_default_separators() -> None:
    assert canonical.canonical_json({"b": 1, "a": [1, 2]}, spaced=True) == '{"a": [1, 2], "b": 1}'


def test_digest_is_the_oci_form_of_the_canonical_bytes() -> None:
    assert canonical.sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert canonical.digest(DOC) == canonical.sha256_digest(canonical.canonical_bytes(DOC))


def test_canonical_json_round_trips() -> None:
    assert json.loads(canonical.canonical_bytes(DOC)) == DOC


# -- the pinned digests of every call site -------------------------------------------------------

#: The content-address form: UTF-8, no escapes (releases, OCI documents, component configs).
CONTENT = "64c658427ec1d5b68409e1a6293ac033585bb4605c930760abd9bfe25dbd708a"
#: The ASCII form with ``default=str`` (platform documents, decision inputs).
ASCII_DOC = "c43dd00b2bf51d99b2a68ea3dba222ddce524bd2ca39defe21c745ffd8cf09a4"
ASCII_ODD = "73ff32e9e1406940e40bb85b5bd6be85b4de4e2e93387b49b8e104f5fb075b78"


def test_release_ids_are_unchanged() -> None:
    from stackyard.state.records import release_digest

    assert release_digest(DOC) == "sha256:" + CONTENT


def test_platform_document_digests_are_unchanged() -> None:
    from stackyard.environments.platform import digest

    assert digest(DOC) == "sha256:" + ASCII_DOC
    assert digest(ODD) == "sha256:" + ASCII_ODD


def test_decision_input_hashes_are_unchanged() -> None:
    from stackyard.policy.decision import canonical as decision_canonical
    from stackyard.policy.decision import input_hash

    assert _sha(decision_canonical(DOC)) == ASCII_DOC
    assert input_hash(DOC) == "sha256:" + ASCII_DOC
    assert input_hash(ODD) == "sha256:" + ASCII_ODD


AUDIT_EVENTS = [
    pytest.param(
        {"seq": 3, "at": 1700000000.25, "actor": "ané", "target": "env:dev", "detail": ODD},
        None,
        "sha256:53249503b18eba28ef16d0695109d43145e7263294dab9bfc6f86e9e8461b7e7",
        id="legacy",
    ),
    pytest.param(
        {"seq": 1, "at": 1.0, "actor": "a", "target": "c", "detail": DOC},
        b"k" * 32,
        "hmac-sha256:0e071e182ffa0ebb92241c44e8195d41dba754e93a3ee2a9d6f72d41c411625b",
        id="keyed",
    ),
]


@pytest.mark.parametrize(("event", "key", "expected"), AUDIT_EVENTS)
def test_audit_chain_hashes_are_unchanged(
    event: dict[str, Any], key: bytes | None, expected: str
) -> None:
    from stackyard.policy.audit import chain_hash

    prev, action = ("sha256:0", "env.create") if key is None else ("x", "b")
    assert chain_hash(prev, action=action, result="ok", key=key, **event) == expected


def test_workload_digests_are_unchanged() -> None:
    from stackyard.runtime import spec as rs

    spec = rs.WorkloadSpec(
        env="dév",
        name="web",
        containers=(
            rs.ContainerSpec(
                name="app",
                argv=("python", "-c", "print('ü')"),
                variables={"B": "2", "A": "é"},
                files=(rs.FileSpec("f.txt", b"\xff\x00", 0o644),),
                volumes=(rs.VolumeSpec("data", "/srv/ü", True),),
                readiness=rs.HttpProbe(8080, "/health", "HTTP", (("X", "y"),)),
            ),
        ),
        ports=(rs.PortSpec("http", 80, 8080),),
    )
    assert spec.digest() == "7011b6fc97e671fb4637164aed7d54c60fd2f30a4fb2816de13edb631d4b3713"


def test_plan_graph_digests_are_unchanged() -> None:
    from stackyard.engine.plan import graph_digest
    from stackyard.model.ids import ResourceUid
    from stackyard.resolve.graph import Graph, Node

    uid = ResourceUid.parse("postgres.default#shop.db")
    node = Node(
        address="postgres.default#shop.db/role",
        kind="postgres.role",
        uid=uid,
        name="role",
        key=None,
        template={"name": "ré", "when": ODD["b"]},
        each=None,
        depends_on=("b", "a"),
        physical_name="shop_db_role",
        deletion="delete",
        component="postgres-database@1.0.0",
    )
    # graph_digest reads only these fields of an instance (``linked``, the inputs set to
    # another resource's outputs, only when there are some: none here, so the digest of a
    # graph without them is what it always was)
    inst = types.SimpleNamespace(
        inputs={"size": 1, "name": "ü"},
        context={"env": "dev"},
        external={"x": ODD["a"]},
        linked={},
        peers={},
    )
    graph = Graph(env="dev", nodes={node.address: node}, instances={uid: inst})  # type: ignore[dict-item]
    assert graph_digest(graph) == "f854d56527aef6ad1b203e6bf6dccca012bb598d834f7f2d1b4083b3d0dc0648"


def test_oci_documents_and_component_configs_are_unchanged() -> None:
    from stackyard.components.oci import encode

    assert _sha(encode(DOC)) == CONTENT
    # the component config (package.py) is this form with NaN refused
    assert _sha(canonical.canonical_bytes(DOC, allow_nan=False)) == CONTENT


def test_signed_statements_and_envelopes_are_unchanged() -> None:
    from stackyard.components.attest import StageResult, Statement, sign

    statement = Statement(
        subject_name="pg-ü",
        subject_version="1.0.0",
        subject_digest="sha256:" + "a" * 64,
        stages=(StageResult("lint", True, "fine é"),),
        tool="stackyard 0.0",
        created="2024-01-02T03:04:05Z",
    )
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # Ed25519 signs deterministically
    assert _sha(statement.to_json()) == (
        "b7ca0f2c60dcef0ba48e499e933b8ca004d384be85e34bc72c81e187586c8c51"
    )
    assert _sha(sign(statement, key)) == (
        "e82b3415728a8be29c6dc15d8a315119bc1832d75de75ef465b2bd9c6bc62866"
    )


def test_placeholder_rendering_is_unchanged() -> None:
    from stackyard.model.placeholders import render

    assert render(DOC) == (
        '{"alpha":{"a":0,"b":1,"kanji":"\\u65e5\\u672c","name":"caf\\u00e9"},'
        '"when":"2024","zeta":[1,2.5,null,true]}'
    )
    assert render([1, "é", {"b": 2, "a": None}]) == '[1,"\\u00e9",{"a":null,"b":2}]'


def test_policy_revisions_are_unchanged() -> None:
    from stackyard.model.platform import Policy
    from stackyard.policy.decision import PolicySet

    policies = PolicySet(
        [
            Policy(
                "z-pol",
                "environment",
                ("plan",),
                {"b.rego": "package b\n# é", "a.rego": "package a"},
                target="dev",
            ),
            Policy("a-pol", "organisation", ("plan", "destroy"), {"x.rego": "package x"}),
        ]
    )
    assert policies.revision == "sha256:a078e0bd77d44c2deb82356b40ed18d2"


def test_a_deprecation_gives_its_subject_the_size_of_the_pushed_manifest(tmp_path: Path) -> None:
    # The notice re-encodes the manifest it read to give its size: in the canonical form the
    # manifest was pushed in, not in ASCII escapes, which count a non-ASCII annotation longer.
    from stackyard import library
    from stackyard.components.catalog import deprecate
    from stackyard.components.layout import LayoutRegistry
    from stackyard.components.package import build

    built = build(library.path("local-volume"))
    name, version = built.manifest.name, built.manifest.version
    registry = LayoutRegistry(tmp_path / "registry")
    pushed = registry.push(
        name=name,
        version=version,
        config=built.manifest_json,
        layer=built.archive,
        annotations={"org.opencontainers.image.description": "café"},
    )
    deprecate(registry, name, version, reason="use 2.x", actor="ané")
    [referrer] = registry.referrers(name, pushed.digest, "application/vnd.stackyard.deprecation.v1")
    _, manifest = registry.manifest(name, referrer["digest"])
    assert manifest["subject"]["digest"] == pushed.digest
    assert manifest["subject"]["size"] == len(pushed.manifest)
