"""Input that can be checked before the first provider call is checked there (issue 11, 12).

Each bad Score makes ``stackyard deploy`` exit 2 with a diagnostic that names the problem,
creates nothing in PostgreSQL or Redis and records no workload; ``stackyard workload
validate --env`` reports the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from _platform import EXAMPLES, Stage
from _sweeper import leaked

pytestmark = pytest.mark.integration


def _score(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load((EXAMPLES / "hello" / "score.yaml").read_text())
    edit(data)
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text((EXAMPLES / "hello" / "app.py").read_text())
    path = folder / "score.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _params(resource: str, params: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["resources"][resource]["params"] = params

    return edit


def _file_target(target: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["containers"]["web"]["files"] = [
            {"target": target, "content": "x"},
            *data["containers"]["web"]["files"],
        ]

    return edit


def _volume_target(target: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["containers"]["web"]["volumes"] = {target: {"source": "${resources.data}"}}

    return edit


CASES = [
    pytest.param(
        _params("cache", {"commands": "+@all ~*"}),
        "Invalid resource config",
        "commands",
        id="redis-commands-key-rule",
    ),
    pytest.param(
        _params("cache", {"commands": "allkeys"}),
        "Invalid resource config",
        "commands",
        id="redis-commands-flag",
    ),
    pytest.param(
        _params("cache", {"platform_commands": "+@all"}),
        "Input reserved for the platform",
        "platform_commands",
        id="redis-platform-commands-from-workload",
    ),
    pytest.param(
        _params("db", {"connection_limit": 99_999_999_999}),
        "Invalid resource config",
        "connection_limit",
        id="connection-limit-out-of-range",
    ),
    pytest.param(
        _params("db", {"connection_limit": -2}),
        "Invalid params",
        "connection_limit",
        id="connection-limit-below-range",
    ),
    pytest.param(
        _params("db", {"extensions": ["Bad-Name"]}),
        "Invalid params",
        "extensions",
        id="extension-name",
    ),
    pytest.param(
        _params("db", {"extensions": ["no_such_extension_here"]}),
        "Not available on the backend",
        "no_such_extension_here",
        id="extension-missing-on-the-server",
    ),
    pytest.param(_file_target("../../etc/cron.d/x"), "Invalid target", "'..'", id="file-dotdot"),
    pytest.param(_file_target("conf/\x00x"), "Invalid target", "NUL", id="file-nul"),
    pytest.param(_volume_target("/data/../../x"), "Invalid target", "'..'", id="volume-dotdot"),
    pytest.param(_volume_target("/da\x00ta"), "Invalid target", "NUL", id="volume-nul"),
]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=180,
    )


@pytest.mark.parametrize(("edit", "summary", "detail"), CASES)
def test_bad_input_exits_2_and_creates_nothing(
    stage: Stage,
    tmp_path: Path,
    postgres_admin_url: str,
    redis_url: str,
    edit: Callable[[dict[str, Any]], None],
    summary: str,
    detail: str,
) -> None:
    dev = stage.name("dev")
    path = _score(tmp_path, edit)
    before = leaked(postgres_admin_url, redis_url, stage.prefix)

    checked = _cli("workload", "validate", "--env", dev, "-o", "json", str(path))
    assert checked.returncode == 2, checked
    report = [d for d in _json(checked.stdout)["diagnostics"] if d["summary"] == summary]
    assert report and any(detail in d["detail"] for d in report), checked.stdout

    done = _cli("deploy", str(path), "--env", dev, "--yes")
    assert done.returncode == 2, done
    assert summary in done.stdout + done.stderr, done
    assert "Traceback" not in done.stderr

    assert leaked(postgres_admin_url, redis_url, stage.prefix) == before  # nothing created
    with stage.ws() as ws:
        assert [w.name for w in ws.records.workloads(dev)] == []  # not recorded
        assert not [uid for uid in ws.records.instances(dev) if "#hello." in uid]


def test_validate_env_passes_a_good_workload(stage: Stage, tmp_path: Path) -> None:
    path = _score(tmp_path, lambda _d: None)
    checked = _cli("workload", "validate", "--env", stage.name("dev"), str(path))
    assert checked.returncode == 0, checked


def _json(text: str) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(text)
    return loaded
