"""One check of what the local runtime can honour: before a deploy (diagnostics on the Score
file) and at start (the runtime's plan), with the same rules."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stackyard.errors import InvalidInputError, StackyardError
from stackyard.model.workload import Workload, check_workload
from stackyard.runtime import capabilities, plan
from stackyard.runtime.capabilities import IGNORED, UNHONOURED, runtime_diagnostics
from stackyard.runtime.layout import WorkloadPaths
from stackyard.runtime.spec import ContainerSpec, HttpProbe, PortSpec, WorkloadSpec
from stackyard.runtime.supervisor import Limits

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "apiVersion": "score.dev/v1b1",
    "metadata": {"name": "hello"},
    "containers": {
        "web": {
            "image": "python:3.11-slim",
            "command": ["python", "app.py"],
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/healthz"}},
        }
    },
    "service": {"ports": {"web": {"port": 80, "targetPort": 8080}}},
}


def _workload(edit: Callable[[dict[str, Any]], None]) -> Workload:
    data = copy.deepcopy(BASE)
    edit(data)
    workload, diags = check_workload(data, file="score.yaml")
    assert workload is not None, diags
    return workload


def _web(data: dict[str, Any]) -> dict[str, Any]:
    return data["containers"]["web"]  # type: ignore[no-any-return]


CASES = [
    ("fine", lambda d: None, [], "a command, TCP and an httpGet probe on a declared port"),
    (
        "probe-by-port",
        lambda d: _web(d)["readinessProbe"]["httpGet"].update(port=80),
        [],
        "a probe may name the published port as well as the targetPort",
    ),
    (
        "no-command",
        lambda d: _web(d).pop("command"),
        [(UNHONOURED, "containers.web.command")],
        "no image is pulled, so an image's default command cannot stand in",
    ),
    (
        "empty-command",
        lambda d: _web(d).update(command=[""]),
        [(UNHONOURED, "containers.web.command")],
        "an empty program name runs nothing: refused before the deploy, not at start",
    ),
    (
        "udp",
        lambda d: d["service"]["ports"]["web"].update(protocol="UDP"),
        [(UNHONOURED, "service.ports.web.protocol")],
        "the runtime serves TCP only",
    ),
    (
        "exec-probe",
        lambda d: _web(d).update(livenessProbe={"exec": {"command": ["true"]}}),
        [(UNHONOURED, "containers.web.livenessProbe.exec")],
        "httpGet probes only",
    ),
    (
        "probe-host",
        lambda d: _web(d)["readinessProbe"]["httpGet"].update(host="example.com"),
        [(UNHONOURED, "containers.web.readinessProbe.httpGet.host")],
        "probes go to the loopback interface",
    ),
    (
        "probe-port",
        lambda d: _web(d)["readinessProbe"]["httpGet"].update(port=9999),
        [(UNHONOURED, "containers.web.readinessProbe.httpGet.port")],
        "host ports are assigned per service port only",
    ),
    (
        "resources",
        lambda d: _web(d).update(resources={"limits": {"memory": "128Mi"}}),
        [(IGNORED, "containers.web.resources")],
        "a warning: local processes run unconstrained",
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_runtime_diagnostics(
    edit: Callable[[dict[str, Any]], None], expected: list[tuple[str, str]], reason: str
) -> None:
    diags = runtime_diagnostics(_workload(edit))
    assert [(d.summary, d.path) for d in diags] == expected, reason
    assert all(d.file == "score.yaml" for d in diags)


def _spec(container: ContainerSpec) -> WorkloadSpec:
    return WorkloadSpec("dev", "web", (container,), (PortSpec("web", 80, 8080),))


def _plan(spec: WorkloadSpec, tmp_path: Path) -> None:
    plan.build_plan(spec, WorkloadPaths(tmp_path / "web"), {"web": 0}, "digest", Limits())


def test_the_runtime_refuses_a_spec_by_the_same_rules(tmp_path: Path) -> None:
    assert plan.runnable is capabilities.runnable
    assert plan.probe_target is capabilities.probe_target
    with pytest.raises(StackyardError, match="has no command"):
        _plan(_spec(ContainerSpec("main", ("",), {})), tmp_path)
    with pytest.raises(InvalidInputError, match="port 9999"):
        _plan(_spec(ContainerSpec("main", ("/bin/true",), {}, readiness=HttpProbe(9999))), tmp_path)


def test_the_containers_runtime_refuses_a_port_that_is_not_tcp() -> None:
    """It publishes TCP only: a UDP port is a diagnostic, never quietly published as TCP."""
    fine = runtime_diagnostics(_workload(lambda d: None), "containers")
    assert fine == []
    udp = runtime_diagnostics(
        _workload(lambda d: d["service"]["ports"]["web"].update(protocol="UDP")), "containers"
    )
    assert [(d.summary, d.path) for d in udp] == [
        ("Not supported by the containers runtime", "service.ports.web.protocol")
    ]
    assert "TCP ports only" in udp[0].detail and udp[0].file == "score.yaml"
