"""Bad input to deploy: each mistake is a diagnostic that names it, and nothing is applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _platform import EXAMPLES, Stage
from stackyard.environments.deploy import deploy_files
from stackyard.errors import InvalidInputError

pytestmark = pytest.mark.integration


def _hello(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((EXAMPLES / "hello" / "score.yaml").read_text())
    edit(data)
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text((EXAMPLES / "hello" / "app.py").read_text())
    path = folder / "score.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _typo(data: dict) -> None:
    data["resources"]["db"]["type"] = "postgress"


def _bad_param(data: dict) -> None:
    data["resources"]["db"]["params"] = {"connection_limit": "lots"}


def _missing_output(data: dict) -> None:
    data["containers"]["web"]["variables"]["PGSCHEMA"] = "${resources.db.schema}"


def _no_command(data: dict) -> None:
    del data["containers"]["web"]["command"]


def _exec_probe(data: dict) -> None:
    data["containers"]["web"]["livenessProbe"] = {"exec": {"command": ["true"]}}


CASES = [
    pytest.param(_typo, "Unknown resource type", "Did you mean 'postgres'?", id="unknown-type"),
    pytest.param(_bad_param, "Invalid params", "connection_limit", id="params-fail-inputs-schema"),
    pytest.param(_missing_output, "Unknown output", "'schema'", id="placeholder-missing-output"),
    pytest.param(
        _no_command, "Not supported by the local runtime", "has no command", id="no-command"
    ),
    pytest.param(
        _exec_probe, "Not supported by the local runtime", "exec livenessProbe", id="exec-probe"
    ),
]


@pytest.mark.parametrize(("edit", "summary", "detail"), CASES)
def test_bad_workloads_get_diagnostics_and_nothing_is_applied(
    stage: Stage,
    tmp_path: Path,
    edit,
    summary: str,
    detail: str,  # type: ignore[no-untyped-def]
) -> None:
    dev = stage.name("dev")
    path = _hello(tmp_path, edit)
    with stage.ws() as ws:
        serial = ws.store.snapshot(dev).serial
        before = len(ws.records.deployments(dev))
        with pytest.raises(InvalidInputError) as err:
            deploy_files(ws, [path], dev, confirm=lambda _p: pytest.fail("must not get to a plan"))
        found = [d for d in err.value.diagnostics if d.summary == summary]
        assert found, [d.summary for d in err.value.diagnostics]
        assert any(detail in d.detail for d in found), [d.detail for d in found]
        assert ws.store.snapshot(dev).serial == serial  # nothing applied
        assert len(ws.records.deployments(dev)) == before  # not even recorded as attempted
        assert ws.records.workloads(dev) == []
        assert ws.runtime(dev).names() == []
