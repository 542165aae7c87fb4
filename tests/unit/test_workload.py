"""Score workloads: loading the full sample, error paths, all errors together, uid defaults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackyard.diagnostics import Severity
from stackyard.errors import InvalidInputError
from stackyard.model.ids import ResourceUid
from stackyard.model.schema_errors import schema_diagnostics
from stackyard.model.workload import (
    API_VERSION,
    check_workload,
    load_workload,
    parse_workload,
    schema_validator,
    validate_workload_file,
)

pytestmark = pytest.mark.unit

VENDORED = Path(__file__).resolve().parents[2] / "src/stackyard/model/schemas/score-v1b1.json"


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "metadata": {"name": "checkout"},
        "containers": {"web": {"image": "nginx"}},
    }
    doc.update(extra)
    return doc


def problems(doc: Any) -> list[tuple[str, str]]:
    _, diags = check_workload(doc, file="w.yaml")
    assert all(d.file == "w.yaml" for d in diags)
    return sorted((d.summary, d.path) for d in diags if d.severity is Severity.ERROR)


# The shared sample and schema.


def test_vendored_schema_matches_shared(shared_dir: Path) -> None:
    assert VENDORED.read_bytes() == (shared_dir / "score" / "score-v1b1.json").read_bytes()


def test_vendored_schema_is_a_valid_schema() -> None:
    schema = json.loads(VENDORED.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert type(schema_validator()) is jsonschema.Draft202012Validator


def test_full_sample_validates_against_shared_schema(shared_dir: Path) -> None:
    schema = json.loads((shared_dir / "score" / "score-v1b1.json").read_text(encoding="utf-8"))
    sample = yaml.safe_load((shared_dir / "score" / "score-full.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(sample)


def test_full_sample_loads(shared_dir: Path) -> None:
    path = shared_dir / "score" / "score-full.yaml"
    w = load_workload(path)
    assert w.name == "example-workload-name123"
    assert w.file == str(path)
    assert w.metadata.extra == {"extra-key": "extra-value"}
    assert w.metadata.annotations == {"prefix.com/Another-Key_Annotation.2": "something else"}
    assert w.metadata.to_dict() == w.raw["metadata"]

    one, two = w.service.ports["port-one"], w.service.ports["port-two2"]
    assert (one.port, one.target_port, one.protocol) == (1000, 10000, "TCP")
    assert (two.port, two.target_port, two.protocol) == (8000, 8000, "TCP")

    c = w.containers["container-one1"]
    assert c.image == "localhost:4000/repo/my-image:tag"
    assert c.command == ("/bin/sh", "-c")
    assert c.args == ("hello", "world")
    assert c.variables == {"SOME_VAR": "some content here"}
    assert c.files["/my/file"].mode == "0600"
    assert c.files["/my/file"].source == "file.txt"
    assert c.files["/my/other/file"].content == "some multiline\ncontent\n"
    assert c.files["/my/other/binaryfile"].binary_content == "ADBgwpA="
    assert c.volumes["/mnt/something"].path == "/sub/path"
    assert c.volumes["/mnt/something"].read_only is False
    assert c.volumes["/mnt/something-else"].source == "volume-two"
    assert c.resources is not None and c.resources.requests is not None
    assert (c.resources.requests.cpu, c.resources.requests.memory) == ("1000m", "10Gi")
    assert c.resources.limits is not None and c.resources.limits.cpu == "0.24"
    assert c.liveness_probe is not None and c.liveness_probe.http_get is not None
    assert c.liveness_probe.http_get.path == "/livez"
    assert c.liveness_probe.exec_command == ("/bin/curl", "-f", "http://localhost:8080/livez")
    ready = c.readiness_probe.http_get if c.readiness_probe else None
    assert ready is not None
    assert (ready.host, ready.scheme, ready.port) == ("127.0.0.1", "HTTP", 80)
    assert ready.headers == (("SOME_HEADER", "some-value-here"),)

    two_c = w.containers["container-two2"]
    assert (two_c.image, two_c.command, two_c.args, dict(two_c.files)) == (".", None, None, {})

    r1 = w.resources["resource-one1"]
    assert str(r1.uid) == "Resource-One.default#example-workload-name123.resource-one1"
    assert (r1.type, r1.klass, r1.id) == ("Resource-One", "default", None)
    assert r1.params == {"extra": {"data": "here"}}
    assert r1.metadata["extra-key"] == "extra-value"
    assert str(w.resources["resource-two2"].uid) == (
        "Resource-Two.default#example-workload-name123.resource-two2"
    )
    assert w.resources["resource-three"].uid == ResourceUid(
        "Type-Three", "default", "shared-type-three"
    )


def test_workload_is_frozen_and_independent_of_input() -> None:
    doc = minimal(resources={"db": {"type": "postgres", "params": {"size": "s"}}})
    w = parse_workload(doc)
    doc["resources"]["db"]["params"]["size"] = "xl"
    assert w.resources["db"].params == {"size": "s"}
    assert w.raw["resources"]["db"]["params"] == {"size": "s"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.file = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        w.containers["x"] = w.containers["web"]  # type: ignore[index]


# Uid defaults: (request, expected uid, reason)
UIDS = [
    ({"type": "postgres"}, "postgres.default#checkout.db", "class and id default"),
    ({"type": "postgres", "class": "large"}, "postgres.large#checkout.db", "explicit class"),
    ({"type": "postgres", "id": "shared-db"}, "postgres.default#shared-db", "explicit id"),
    ({"type": "s3", "class": "eu", "id": "a.b-c"}, "s3.eu#a.b-c", "both explicit"),
]


@pytest.mark.parametrize(("request_", "uid", "reason"), UIDS, ids=[u[2] for u in UIDS])
def test_uid_defaults(request_: dict[str, str], uid: str, reason: str) -> None:
    res = parse_workload(minimal(resources={"db": request_})).resources["db"]
    assert str(res.uid) == uid, reason
    assert res.uid == ResourceUid.parse(uid)
    assert (res.klass, res.id) == (request_.get("class"), request_.get("id"))


# Error paths: (document change, expected (summary, path) pairs, reason)
C = {"image": "nginx"}
ERRORS = [
    ({"containers": {"web": {}}}, [("Missing field", "containers.web.image")], "missing image"),
    (
        {"containers": {"web": {"image": 3}}},
        [("Wrong type", "containers.web.image")],
        "image not a string",
    ),
    (
        {"containers": {"web": {**C, "args": ["a", 1]}}},
        [("Wrong type", "containers.web.args[1]")],
        "list items are indexed",
    ),
    (
        {"containers": {"web": {**C, "files": {"/etc/a.conf": {"mode": "0600"}}}}},
        [("Missing field", r"containers.web.files./etc/a\.conf")],
        "dots in keys are escaped",
    ),
    (
        {"resources": {"db": {"type": "postgres", "class": "x"}}},
        [("Invalid resource class", "resources.db.class")],
        "uid check replaces the schema's pattern error",
    ),
    (
        {"resources": {"db": {"type": "postgres", "parms": {}}}},
        [("Unknown field", "resources.db.parms")],
        "unknown field under a resource",
    ),
    ({"apiVersion": "score.dev/v2"}, [("Unsupported apiVersion", "apiVersion")], "apiVersion"),
    (
        {"containers": {"web": {**C, "variables": {"A": "${resources.db.host}"}}}},
        [("Unknown resource", "containers.web.variables.A")],
        "undeclared resource",
    ),
    (
        {"containers": {"web": {**C, "command": ["${metadata.nope}"]}}},
        [("Unknown placeholder key", "containers.web.command[0]")],
        "metadata keys must exist",
    ),
    (
        {"containers": {"web": {**C, "volumes": {"/d": {"source": "${resources}"}}}}},
        [("Invalid placeholder", "containers.web.volumes./d.source")],
        "resources root needs a name",
    ),
    (
        {"containers": {"web": {**C, "files": [{"content": "x"}]}}},
        [("Missing field", "containers.web.files[0].target")],
        "list form needs target",
    ),
    (
        {"containers": {"web": {**C, "before": {"db": {"ready": "started"}}}}},
        [("Unknown container", "containers.web.before.db")],
        "before names a container",
    ),
]


@pytest.mark.parametrize(("change", "expected", "reason"), ERRORS, ids=[e[2] for e in ERRORS])
def test_error_paths(change: dict[str, Any], expected: list[tuple[str, str]], reason: str) -> None:
    assert problems(minimal(**change)) == expected, reason


def test_all_errors_come_back_together() -> None:
    doc = {
        "apiVersion": API_VERSION,
        "metadata": {"name": "Bad_Name"},
        "containers": {
            "web": {
                "image": 1,
                "env": {},
                "variables": {"A": "${foo.bar}", "B": "${resources.dbb.host}", "C": "${x"},
            },
            "Side_Car": {"image": "x"},
        },
        "service": {"ports": {"www": {"port": 0, "protocol": "HTTP"}}},
        "resources": {"db": {"type": "-pg", "id": "Bad_Id"}},
        "extra": True,
    }
    assert problems(doc) == [
        ("Invalid name", "containers.Side_Car"),
        ("Invalid placeholder", "containers.web.variables.C"),
        ("Invalid resource id", "resources.db.id"),
        ("Invalid resource type", "resources.db.type"),
        ("Invalid value", "metadata.name"),
        ("Invalid value", "service.ports.www.port"),
        ("Invalid value", "service.ports.www.protocol"),
        ("Unknown field", "containers.web.env"),
        ("Unknown field", "extra"),
        ("Unknown placeholder root", "containers.web.variables.A"),
        ("Unknown resource", "containers.web.variables.B"),
        ("Wrong type", "containers.web.image"),
    ]


def test_details_say_what_is_expected() -> None:
    _, diags = check_workload(
        minimal(
            resources={"db": {"type": "postgres"}},
            containers={"web": {"image": "x", "variables": {"A": "${resources.dbb.host}"}}},
        )
    )
    (diag,) = diags
    assert "Did you mean 'db'?" in diag.detail
    _, diags = check_workload(minimal(apiVersion="score.dev/v1b2"))
    assert "score.dev/v1b1" in diags[0].detail


def test_valid_placeholders_and_escapes_pass() -> None:
    w = parse_workload(
        minimal(
            resources={"db": {"type": "postgres"}, "data": {"type": "volume"}},
            containers={
                "web": {
                    "image": "x",
                    "command": ["sh", "-c", "echo $$HOME $PATH"],
                    "variables": {"URL": "${resources.db.host}:${resources.db.port}"},
                    "files": {
                        "/a": {"content": "${metadata.name}"},
                        "/b": {"content": "${not.checked}", "noExpand": True},
                        "/c": {"binaryContent": "JHt4"},
                    },
                    "volumes": {"/data": {"source": "${resources.data}", "readOnly": True}},
                }
            },
        )
    )
    assert w.containers["web"].files["/b"].no_expand is True
    assert w.containers["web"].volumes["/data"].read_only is True


def test_list_forms_are_accepted_with_a_warning() -> None:
    w, diags = check_workload(
        minimal(
            containers={
                "web": {
                    "image": "x",
                    "files": [{"target": "/etc/a", "content": "a"}],
                    "volumes": [{"target": "/data", "source": "vol", "readOnly": True}],
                }
            }
        )
    )
    assert w is not None
    assert [(d.severity, d.summary) for d in diags] == [(Severity.WARNING, "Deprecated form")] * 2
    assert w.containers["web"].files["/etc/a"].content == "a"
    assert w.containers["web"].volumes["/data"].source == "vol"


def test_parse_workload_raises_with_every_diagnostic() -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_workload({"apiVersion": API_VERSION}, file="x.yaml")
    assert sorted(d.path for d in exc.value.diagnostics) == ["containers", "metadata"]
    assert {d.file for d in exc.value.diagnostics} == {"x.yaml"}
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [([], "list"), ("x", "string"), (None, "null"), (3, "number")],
    ids=["list", "string", "null", "number"],
)
def test_top_level_must_be_a_mapping(data: Any, reason: str) -> None:
    assert problems(data) == [("Wrong type", "")], reason


def test_validate_workload_file_reports_missing_file(tmp_path: Path) -> None:
    w, diags = validate_workload_file(tmp_path / "none.yaml")
    assert w is None
    assert [(d.summary, d.file) for d in diags] == [("File not found", str(tmp_path / "none.yaml"))]
    with pytest.raises(InvalidInputError):
        load_workload(tmp_path / "none.yaml")


def test_schema_diagnostics_is_generic() -> None:
    validator = jsonschema.Draft202012Validator(
        {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "items": {"type": "array", "items": {"enum": ["a", "b"]}},
                "labels": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
            },
        }
    )
    diags = schema_diagnostics(
        validator, {"nmae": 1, "items": ["a", "c"], "labels": {"OK": "x"}}, file="c.yaml"
    )
    got = sorted((d.summary, d.path) for d in diags)
    assert got == [
        ("Invalid name", "labels.OK"),
        ("Invalid value", "items[1]"),
        ("Missing field", "name"),
        ("Unknown field", "nmae"),
    ]
    assert all(d.file == "c.yaml" and d.detail.endswith((".", "?")) for d in diags)
    assert "Did you mean 'name'?" in next(d.detail for d in diags if d.path == "nmae")


# Whatever the data, checking returns diagnostics; it never raises.
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=15,
)
score_like = st.fixed_dictionaries(
    {
        "apiVersion": st.just(API_VERSION),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["ab", "A", "web"])})
        | json_like,
        "containers": st.dictionaries(
            st.sampled_from(["web", "W", "db"]),
            st.fixed_dictionaries(
                {"image": json_like},
                optional={
                    "variables": st.dictionaries(st.text(max_size=4), json_like, max_size=3),
                    "files": json_like,
                    "volumes": json_like,
                    "before": json_like,
                    "command": st.lists(st.sampled_from(["${", "${resources.x}", "$$", "a"])),
                },
            ),
            max_size=2,
        ),
    },
    optional={"resources": st.dictionaries(st.sampled_from(["db", "x"]), json_like, max_size=2)},
)


@settings(max_examples=200, deadline=None)
@given(json_like | score_like)
def test_check_never_raises(data: Any) -> None:
    workload, diags = check_workload(data, file="f.yaml")
    assert (workload is None) == any(d.severity is Severity.ERROR for d in diags)
    assert all(d.file == "f.yaml" and d.summary for d in diags)
