"""The day 2 commands through a real server: drift (scan, --fix, --history), adopt, forget,
env repair, upgrade, slo and slo probe, catalog adoption and the Backstage export give the
same ``--output json`` (and drift's text and exit status 11) as local mode on an identical
home; a viewer is refused every change over HTTP (403) and through the CLI (exit 6)."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _remotesupport import ME, Twin, differences, normalise, run_cli

from _cli import Result
from _lite import lite_platform, sleeper_score

pytestmark = pytest.mark.integration

VIEWER = "day2-viewer"
_WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( UTC)?")


def _text(out: str, homes: tuple[Path, ...]) -> str:
    """Text output with ids, home paths and times replaced."""
    return str(_WHEN.sub("<when>", normalise(out, homes)))


@dataclass
class Warm:
    """The twin homes, each command run through one command server (``stackyard daemon``:
    a warm process per run instead of a cold one; it forwards the environment, so the
    remote runs still go to the server)."""

    twin: Twin
    sockets: Path

    def env(self) -> dict[str, str]:
        return {"STACKYARD_DAEMON": "1", "STACKYARD_DAEMON_DIR": str(self.sockets)}

    def local_cli(self, *args: str) -> Result:
        return run_cli(*args, env={**self.twin.local_env(), **self.env()})

    def remote_cli(self, *args: str, **extra: str) -> Result:
        return run_cli(*args, env=self.twin.remote_env(**self.env(), **extra))


@pytest.fixture
def quiet_twin(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Warm]:
    """The twin homes, the server's worker without the periodic steps (an SLO probe of its
    own would add samples that the local home does not have)."""
    monkeypatch.setenv("STACKYARD_TICKER", "0")
    twin: Twin = request.getfixturevalue("twin")
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    warm = Warm(twin, sockets)
    try:
        yield warm
    finally:
        stop = {**warm.env(), "STACKYARD_DAEMON": "0", "STACKYARD_URL": ""}
        stopped = run_cli("daemon", "stop", env={**twin.local_env(), **stop})
        assert stopped.code == 0, str(stopped)


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
    """Every day 2 command on a deployed environment (JSON, and text where it says more);
    its volume removed half way, then forgotten and adopted."""
    _setup(cli, work, env)
    runs = [
        cli("drift", "--env", env, "-o", "json"),
        cli("slo", "probe", "--env", env, "-o", "json"),
        cli("slo", "--env", env, "-o", "json"),
        cli("slo", "--env", env),
        cli("catalog", "adoption", "-o", "json"),
        cli("catalog", "adoption"),
        cli("catalog", "export", "--format", "backstage", "-o", "json"),
        cli("catalog", "export", "--format", "backstage", "--to", str(work / "bs")),
        cli("upgrade", "local-volume", "--to", "^1", "--plan-only", "-o", "json"),
        cli("upgrade", "local-volume", "--to", "^1", "--yes"),
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
        cli("adopt", env, address, "-o", "json"),
        cli("drift", "--all", "-o", "json"),
        cli("drift", "--history", "--all"),
    ]
    return runs


#: The exit status of each run of ``day2``: drift found is 11.
CODES = [0] * 10 + [11, 11] + [0] * 7


def test_day2_commands_same_as_local(quiet_twin: Warm, tmp_path: Path) -> None:
    twin = quiet_twin.twin
    env = f"d{secrets.token_hex(4)}"
    local = day2(quiet_twin.local_cli, twin.local, tmp_path / "l", env)
    remote = day2(quiet_twin.remote_cli, twin.remote_home, tmp_path / "r", env)
    homes = (twin.local, twin.remote_home, tmp_path / "l", tmp_path / "r")
    assert [r.code for r in local] == CODES, "\n".join(map(str, local))
    for mine, theirs in zip(local, remote, strict=True):
        assert theirs.code == mine.code, str(theirs)
        if "-o" not in mine.args:  # text: the same lines
            assert _text(theirs.out, homes) == _text(mine.out, homes), str(theirs)
            continue
        diff = differences(normalise(mine.json(), homes), normalise(theirs.json(), homes))
        assert not diff, f"{' '.join(theirs.args)}: local != remote at " + "; ".join(diff)

    assert remote[2].json()["slos"], "no SLO target measured"
    assert remote[6].json()["entities"], "nothing exported"
    written = [(tmp_path / side / "bs" / "catalog-info.yaml").read_text() for side in "lr"]
    assert written[0] == written[1]
    assert "kind: System" in written[1]
    found = remote[10].json()
    assert found["drift"] is True
    assert [f["status"] for f in found["environments"][0]["findings"]] == ["missing"]
    assert "missing" in remote[11].out
    fixed = remote[12].json()
    assert fixed["drift"] is False and fixed["fixed"][env]["status"] == "succeeded"
    assert {s["trigger"] for s in remote[13].json()[env]} == {"manual"}
    forgotten = remote[15].json()["forgotten"]
    assert forgotten == [_volume(twin.remote_home, env)[0]]
    assert remote[16].json()["address"] == forgotten[0]
    assert remote[17].json()["environments"][0]["resources"] == 1
    assert not (twin.config / "no-home").exists()  # the remote runs never touched a home


def _viewer(twin: Twin) -> str:
    """A token of an organisation-wide viewer on the server's home."""
    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=twin.remote_home, actor=ME, environ={})) as ws:
        grants.grant(ws, grants.parse("viewer", user=VIEWER, team=None, env=None, env_type=None))
        return tokens.create(ws, user=VIEWER, ttl="1d").token


def test_a_viewer_reads_but_cannot_change(quiet_twin: Warm, tmp_path: Path) -> None:
    twin = quiet_twin.twin
    env = f"d{secrets.token_hex(4)}"
    _setup(quiet_twin.remote_cli, tmp_path, env, deploy=False)
    token = _viewer(twin)
    as_viewer: dict[str, Any] = {"STACKYARD_TOKEN": token}

    read = quiet_twin.remote_cli("drift", "--env", env, "-o", "json", **as_viewer)
    assert read.code == 0 and read.json()["drift"] is False, str(read)
    assert quiet_twin.remote_cli("slo", "--env", env, **as_viewer).code == 0
    for args in (
        ("drift", "--fix", "--env", env),
        ("adopt", env, "volume.data"),
        ("forget", env, "volume.data", "--yes"),
        ("env", "repair", env),
        ("upgrade", "local-volume", "--to", "^1", "--env", env, "--yes"),
    ):
        refused = quiet_twin.remote_cli(*args, **as_viewer)
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
        jobs = http.get("/api/v1/jobs").json()["items"]
        assert [j["kind"] for j in jobs if j["actor"] == VIEWER] == []  # nothing was queued
        assert http.get("/api/v1/drift", params={"env": env}).status_code == 200
        assert http.post("/api/v1/drift/fix", json={"envs": []}).status_code == 422
    anonymous = httpx.get(f"{twin.url}/api/v1/drift/history", timeout=30)
    assert anonymous.status_code == 401
    # the refusals are in the audit log
    denied = [
        e
        for e in quiet_twin.remote_cli("audit", "-o", "json").json()
        if e["actor"] == VIEWER and e["result"] == "denied"
    ]
    assert len(denied) >= 8, denied

    # an unknown environment reads the same; no token says how to log in
    for args in (("drift", "--env", "nowhere"), ("env", "repair", "nowhere")):
        mine, theirs = quiet_twin.local_cli(*args), quiet_twin.remote_cli(*args)
        assert mine.code != 0 and theirs.code == mine.code, str(theirs)
        # (the hint lists the known environments: the server's home has one more)
        assert theirs.err.splitlines()[0] == mine.err.splitlines()[0], str(theirs)
    bad = quiet_twin.remote_cli("drift", "--all", STACKYARD_TOKEN="")
    assert bad.code == 6 and "Not logged in" in bad.err, str(bad)
