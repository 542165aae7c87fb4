"""The day 2 commands through a real server: drift (scan, --fix, --history), adopt, forget,
env repair, upgrade, slo and slo probe, catalog adoption and the Backstage export give the
same ``--output json`` (and drift's text and exit status 11) as local mode on an identical
home; a viewer is refused every change over HTTP (403) and through the CLI (exit 6)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _remotesupport import ME, Twin, run_cli
from test_remote_cli import differences, normalise

from _cli import Result
from _lite import lite_platform, sleeper_score

pytestmark = pytest.mark.integration

VIEWER = "day2-viewer"


@pytest.fixture
def quiet_twin(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Twin]:
    """The twin homes, the server's worker without the periodic steps: an SLO probe of its
    own would add samples that the local home does not have."""
    monkeypatch.setenv("STACKYARD_TICKER", "0")
    found: Twin = request.getfixturevalue("twin")
    yield found


def _volume(home: Path, env: str) -> tuple[str, str]:
    """The address and directory of ``env``'s volume in ``home``."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=home, actor=ME, environ={})) as ws:
        for address, rec in ws.store.snapshot(env).resources.items():
            if rec.kind == "local.directory":
                return address, rec.physical_id
    raise AssertionError(f"no volume in {env}")


def _setup(cli: Callable[..., Result], work: Path, env: str, *, deploy: bool = True) -> None:
    platform = work / "platform"
    platform.mkdir(parents=True)
    (platform / "platform.yaml").write_text(lite_platform(env))
    score = work / "score.yaml"
    score.write_text(sleeper_score("app"))
    steps = [("platform", "apply", str(platform), "--yes"), ("env", "create", env)]
    if deploy:
        steps.append(("deploy", str(score), "--env", env, "--yes"))
    for args in steps:
        done = cli(*args)
        assert done.code == 0, str(done)


def day2(cli: Callable[..., Result], home: Path, work: Path, env: str) -> list[Result]:
    """Every day 2 command on a deployed environment; its volume removed half way."""
    _setup(cli, work, env)
    runs = [
        cli("drift", "--env", env, "-o", "json"),
        cli("slo", "probe", "--env", env, "-o", "json"),
        cli("slo", "--env", env, "-o", "json"),
        cli("catalog", "adoption", "-o", "json"),
        cli("catalog", "export", "--format", "backstage", "-o", "json"),
        cli("upgrade", "local-volume", "--to", "^1", "--plan-only", "-o", "json"),
        cli("upgrade", "local-volume", "--to", "^1", "--yes", "-o", "json"),
    ]
    address, directory = _volume(home, env)
    shutil.rmtree(directory)
    runs += [
        cli("drift", "--env", env, "-o", "json"),
        cli("drift", "--env", env),
        cli("drift", "--fix", "--env", env, "-o", "json"),
        cli("drift", "--history", "--env", env, "-o", "json"),
        cli("env", "repair", env, "-o", "json"),
        cli("forget", env, address, "--yes", "-o", "json"),
        cli("drift", "--all", "-o", "json"),
        cli("adopt", env, address, "-o", "json"),
        cli("drift", "--all", "-o", "json"),
    ]
    return runs


#: The exit status of each run of ``day2``: drift found is 11.
CODES = [0, 0, 0, 0, 0, 0, 0, 11, 11, 0, 0, 0, 0, 11, 0, 0]


def test_day2_commands_same_as_local(quiet_twin: Twin, tmp_path: Path) -> None:
    twin = quiet_twin
    env = f"d{secrets.token_hex(4)}"
    local = day2(twin.local_cli, twin.local, tmp_path / "l", env)
    remote = day2(twin.remote_cli, twin.remote_home, tmp_path / "r", env)
    homes = (twin.local, twin.remote_home, tmp_path / "l", tmp_path / "r")
    assert [r.code for r in local] == CODES, "\n".join(map(str, local))
    for mine, theirs in zip(local, remote, strict=True):
        assert theirs.code == mine.code, str(theirs)
        if "-o" not in mine.args:  # drift's text: the same lines
            assert normalise(theirs.out, homes) == normalise(mine.out, homes), str(theirs)
            continue
        diff = differences(normalise(mine.json(), homes), normalise(theirs.json(), homes))
        assert not diff, f"{' '.join(theirs.args)}: local != remote at " + "; ".join(diff)

    found = remote[7].json()
    assert found["drift"] is True
    assert [f["status"] for f in found["environments"][0]["findings"]] == ["missing"]
    assert "missing" in remote[8].out
    fixed = remote[9].json()
    assert fixed["drift"] is False and fixed["fixed"][env]["status"] == "succeeded"
    assert [s["trigger"] for s in remote[10].json()[env]] == ["manual"] * 4
    assert remote[12].json()["forgotten"] == [_volume(twin.remote_home, env)[0]]
    unmanaged = remote[13].json()["environments"][0]["findings"]
    assert [f["status"] for f in unmanaged] == ["unmanaged"]
    assert remote[14].json()["address"] == remote[12].json()["forgotten"][0]
    assert remote[2].json()["slos"], "no SLO target measured"
    assert remote[4].json()["entities"], "nothing exported"
    assert remote[6].json()["plan_only"] is False
    assert not (twin.config / "no-home").exists()  # the remote runs never touched a home


def test_day2_text_and_export_file(quiet_twin: Twin, tmp_path: Path) -> None:
    twin = quiet_twin
    env = f"d{secrets.token_hex(4)}"
    outs: list[list[Result]] = []
    for cli, work in ((twin.local_cli, tmp_path / "l"), (twin.remote_cli, tmp_path / "r")):
        _setup(cli, work, env, deploy=False)
        outs.append(
            [
                cli("upgrade", "local-volume", "--to", "^1", "--yes"),
                cli("slo", "--env", env),
                cli("catalog", "adoption"),
                cli("catalog", "export", "--format", "backstage"),
                cli("catalog", "export", "--format", "backstage", "--to", str(work / "bs")),
                cli("drift", "--history", "--all"),
            ]
        )
    homes = (twin.local, twin.remote_home, tmp_path / "l", tmp_path / "r")
    for mine, theirs in zip(*outs, strict=True):
        assert mine.code == 0, str(mine)
        assert theirs.code == 0, str(theirs)
        assert normalise(theirs.out, homes) == normalise(mine.out, homes), str(theirs)
    written = [(tmp_path / side / "bs" / "catalog-info.yaml").read_text() for side in "lr"]
    assert written[0] == written[1] == outs[1][3].out
    assert "kind: System" in written[1]


def _viewer(twin: Twin) -> str:
    """A token of an organisation-wide viewer on the server's home."""
    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=twin.remote_home, actor=ME, environ={})) as ws:
        grants.grant(ws, grants.parse("viewer", user=VIEWER, team=None, env=None, env_type=None))
        return tokens.create(ws, user=VIEWER, ttl="1d").token


def test_a_viewer_reads_but_cannot_change(quiet_twin: Twin, tmp_path: Path) -> None:
    twin = quiet_twin
    env = f"d{secrets.token_hex(4)}"
    _setup(twin.remote_cli, tmp_path, env, deploy=False)
    token = _viewer(twin)
    as_viewer: dict[str, Any] = {"STACKYARD_TOKEN": token}

    read = twin.remote_cli("drift", "--env", env, "-o", "json", **as_viewer)
    assert read.code == 0 and read.json()["drift"] is False, str(read)
    assert twin.remote_cli("slo", "--env", env, **as_viewer).code == 0
    for args in (
        ("drift", "--fix", "--env", env),
        ("adopt", env, "volume.data"),
        ("forget", env, "volume.data", "--yes"),
        ("env", "repair", env),
        ("upgrade", "local-volume", "--to", "^1", "--env", env, "--yes"),
    ):
        refused = twin.remote_cli(*args, **as_viewer)
        assert refused.code == 6, str(refused)
        assert VIEWER in refused.err, str(refused)

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=twin.url, headers=headers, timeout=60) as http:
        for method, path, body in (
            ("POST", "/api/v1/drift/fix", {"envs": [env]}),
            ("POST", f"/api/v1/environments/{env}/adopt", {"address": "volume.data"}),
            ("POST", f"/api/v1/environments/{env}/forget", {"addresses": ["volume.data"]}),
            ("POST", f"/api/v1/environments/{env}/repair", None),
            ("POST", "/api/v1/upgrade", {"component": "local-volume", "to": "^1", "envs": [env]}),
        ):
            answer = http.request(method, path, json=body)
            assert answer.status_code == 403, f"{path}: {answer.status_code} {answer.text}"
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["exit_code"] == 6
        assert http.get("/api/v1/jobs").json()["items"] == []  # nothing was queued
        assert http.get("/api/v1/drift", params={"env": env}).status_code == 200
        assert http.post("/api/v1/drift/fix", json={"envs": []}).status_code == 422
    anonymous = httpx.get(f"{twin.url}/api/v1/drift/history", timeout=30)
    assert anonymous.status_code == 401
    # the refusals are in the audit log
    denied = [
        e
        for e in twin.remote_cli("audit", "-o", "json").json()
        if e["actor"] == VIEWER and e["result"] == "denied"
    ]
    assert len(denied) >= 8, denied


def test_drift_exit_code_and_unknown_environment(quiet_twin: Twin) -> None:
    for args in (("drift", "--env", "nowhere"), ("env", "repair", "nowhere")):
        mine, theirs = quiet_twin.local_cli(*args), quiet_twin.remote_cli(*args)
        assert mine.code != 0 and theirs.code == mine.code, str(theirs)
        assert theirs.err == mine.err, str(theirs)
    bad = run_cli("drift", "--all", env={**quiet_twin.remote_env(), "STACKYARD_TOKEN": ""})
    assert bad.code == 6 and "Not logged in" in bad.err, str(bad)
