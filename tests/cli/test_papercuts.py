"""What a new user met in the first hour, run as they ran it: the CLI in a subprocess, off a
terminal (issue 12, papercuts)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from _as_user import cli
from _platform import EXAMPLES, Stage
from stackyard import library

pytestmark = pytest.mark.integration

#: 62 characters: cut at 80 columns, the table's first column alone no longer fits.
LONG_NAME = "local-volume-with-a-name-long-enough-to-be-cut-at-eighty-chars"


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(home, *args, columns=None)  # a pipe, as in CI or `| grep`: no terminal width


def test_a_long_component_name_is_listed_whole_off_a_terminal(
    library_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / LONG_NAME
    shutil.copytree(library.path("local-volume"), folder)
    manifest = folder / "component.yaml"
    manifest.write_text(
        manifest.read_text().replace("name: local-volume", f"name: {LONG_NAME}"), encoding="utf-8"
    )
    published = _run(library_home, "component", "publish", str(folder))
    assert published.returncode == 0, published.stderr

    listed = _run(library_home, "component", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if LONG_NAME in line]
    assert row.split()[:5] == [LONG_NAME, "1.0.0", "team-platform", "production", "volume"]
    assert "…" not in listed.stdout


def test_a_bad_score_file_is_named_by_its_path_and_hints_nothing_untrue(
    stage: Stage, tmp_path: Path
) -> None:
    data = yaml.safe_load((EXAMPLES / "hello" / "score.yaml").read_text())
    data["resources"]["db"]["type"] = "postgress"
    data["resources"]["other"] = {"type": "postgres", "params": {"connection_limit": "lots"}}
    del data["containers"]["web"]["command"]
    score = tmp_path / "app" / "score.yaml"
    score.parent.mkdir()
    shutil.copy(EXAMPLES / "hello" / "app.py", score.parent / "app.py")
    score.write_text(yaml.safe_dump(data), encoding="utf-8")

    res = _run(stage.home, "deploy", str(score), "--env", stage.name("dev"), "--output", "json")
    assert res.returncode == 2, (res.stdout, res.stderr)
    found = {d["summary"]: d for d in json.loads(res.stdout)["diagnostics"]}
    wanted = {"Unknown resource type", "Invalid params", "Not supported by the local runtime"}
    assert wanted <= set(found), res.stdout
    unknown = found["Unknown resource type"]
    assert (unknown["file"], unknown["path"]) == (str(score), "resources.db")
    assert "Did you mean 'postgres'?" in unknown["detail"]
    params = found["Invalid params"]
    assert (params["file"], params["path"]) == (
        str(score),
        "resources.other.params.connection_limit",
    )
    no_command = found["Not supported by the local runtime"]
    assert (no_command["file"], no_command["path"]) == (str(score), "containers.web.command")
    # The local runtime is the only one: no hint may send the user to another.
    assert "another runtime" not in res.stdout + res.stderr

    text = _run(stage.home, "deploy", str(score), "--env", stage.name("dev"))
    assert text.returncode == 2, (text.stdout, text.stderr)
    assert f"Unknown resource type  {score}:resources.db" in text.stderr
