"""The remote CLI against a real server: the quickstart-like flow gives the same
``--output json`` (and text) as local mode on an identical home, ids and times aside; errors
read the same; a missing token says how to log in; local-only commands are refused; and
``login`` stores a private config that later commands use."""

from __future__ import annotations

import secrets
import stat
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from _remotesupport import Twin, differences, normalise, run_cli

from _cli import Result
from _lite import lite_platform, sleeper_score

pytestmark = pytest.mark.integration


def platform_dir(root: Path, first: str, second: str) -> Path:
    """The lite platform with environments ``first`` and ``second`` on one promotion path."""
    root.mkdir(parents=True)
    (root / "platform.yaml").write_text(
        lite_platform(first)
        + textwrap.dedent(
            f"""\
            ---
            apiVersion: stackyard.dev/v1
            kind: Environment
            metadata: {{name: {second}}}
            spec: {{type: lite, owner: team-checkout}}
            ---
            apiVersion: stackyard.dev/v1
            kind: PromotionPath
            metadata: {{name: default}}
            spec:
              stages: [{first}, {second}]
            """
        )
    )
    return root


def flow(cli: Callable[..., Result], work: Path, first: str, second: str) -> list[Result]:
    """The quickstart's road, every step with ``--output json``."""
    platform = platform_dir(work / "platform", first, second)
    score = work / "app" / "score.yaml"
    score.parent.mkdir(parents=True)
    score.write_text(sleeper_score("app"))
    runs = [
        cli("platform", "apply", str(platform), "--yes", "-o", "json"),
        cli("platform", "show", "-o", "json"),
        cli("env", "create", first, "-o", "json"),
        cli("env", "create", second, "-o", "json"),
        cli("env", "list", "-o", "json"),
        cli("env", "show", first, "-o", "json"),
        cli("deploy", str(score), "--env", first, "--plan-only", "-o", "json"),
        cli("deploy", str(score), "--env", first, "--yes", "-o", "json"),
        cli("status", first, "-o", "json"),
        cli("outputs", first, "-o", "json"),
        cli("deployments", first, "-o", "json"),
    ]
    release = cli("release", "create", str(score), "--env", first, "-o", "json")
    runs.append(release)
    rel = release.json()["id"] if release.code == 0 else "missing"
    runs += [
        cli("release", "list", "-o", "json"),
        cli("deploy", "--release", rel, "--env", first, "--yes", "-o", "json"),
        cli("promote", rel, "--to", second, "--plan-only", "-o", "json"),
        cli("promote", rel, "--to", second, "--yes", "-o", "json"),
        cli("release", "show", rel, "-o", "json"),
        cli("status", second, "-o", "json"),
        cli("approvals", "-o", "json"),
        cli("cost", "-o", "json"),
        cli("access", "list", "-o", "json"),
        cli("audit", "verify", "-o", "json"),
        cli("env", "destroy", second, "--yes", "-o", "json"),
        cli("env", "destroy", first, "--yes", "-o", "json"),
        cli("env", "list", "-o", "json"),
    ]
    return runs


def test_quickstart_flow_same_json_as_local(twin: Twin, tmp_path: Path) -> None:
    first, second = f"r{secrets.token_hex(4)}", f"r{secrets.token_hex(4)}"
    local = flow(twin.local_cli, tmp_path / "l", first, second)
    remote = flow(twin.remote_cli, tmp_path / "r", first, second)
    homes = (twin.local, twin.remote_home, tmp_path / "l", tmp_path / "r")
    for mine, theirs in zip(local, remote, strict=True):
        assert mine.code == 0, str(mine)
        assert theirs.code == 0, str(theirs)
        diff = differences(normalise(mine.json(), homes), normalise(theirs.json(), homes))
        assert not diff, f"{' '.join(theirs.args)}: local != remote at " + "; ".join(diff)
    deployed = remote[7].json()
    assert deployed["deployment"]["status"] == "succeeded"
    assert deployed["workloads"]["app"]["state"] == "ready"
    assert {e["status"] for e in remote[-1].json()} <= {"declared", "destroyed"}
    assert not (twin.config / "no-home").exists()  # the remote runs never touched a home


def test_text_output_and_progress(twin: Twin, tmp_path: Path) -> None:
    env = f"r{secrets.token_hex(4)}"
    outs: list[tuple[Result, Result]] = []
    for cli, work in ((twin.local_cli, tmp_path / "l"), (twin.remote_cli, tmp_path / "r")):
        platform = platform_dir(work / "platform", env, f"{env}x")
        score = work / "score.yaml"
        score.write_text(sleeper_score("web"))
        assert cli("platform", "apply", str(platform), "--yes").code == 0
        created = cli("env", "create", env)
        deployed = cli("deploy", str(score), "--env", env, "--yes")
        status = cli("status", env)
        outs += [(created, deployed), (status, status)]
        assert cli("env", "destroy", env, "--yes").code == 0
    (l_created, l_deployed), (l_status, _), (r_created, r_deployed), (r_status, _) = outs
    homes = (twin.local, twin.remote_home)
    assert r_created.out == l_created.out
    assert normalise(r_deployed.out, homes) == normalise(l_deployed.out, homes)
    assert "deployed to" in r_deployed.out
    # the plan rendered before the apply, and progress from the job's event stream
    assert "Plan for" in r_deployed.out
    l_lines = {line for line in l_deployed.err.splitlines() if line.strip()}
    r_lines = {line for line in r_deployed.err.splitlines() if line.strip()}
    assert r_lines, str(r_deployed)
    assert {normalise(x, homes) for x in r_lines} & {normalise(x, homes) for x in l_lines}
    assert (
        normalise(r_status.out, homes).splitlines()[0]
        == normalise(l_status.out, homes).splitlines()[0]
    )


@pytest.mark.parametrize(
    "args",
    [
        ("status", "nowhere"),
        ("env", "show", "nowhere"),
        ("deployments", "nowhere"),
        ("release", "show", "feedface"),
    ],
    ids=["status", "env-show", "deployments", "release-show"],
)
def test_errors_read_the_same(twin: Twin, args: tuple[str, ...]) -> None:
    for extra in ((), ("-o", "json")):
        mine, theirs = twin.local_cli(*args, *extra), twin.remote_cli(*args, *extra)
        assert mine.code != 0, str(mine)
        assert theirs.code == mine.code, str(theirs)
        assert theirs.err == mine.err, str(theirs)
        if extra:
            assert theirs.json()["error"]["message"] == mine.json()["error"]["message"]
            assert theirs.json()["error"]["hint"] == mine.json()["error"]["hint"]


def test_no_token_says_to_log_in(twin: Twin) -> None:
    env = twin.remote_env()
    del env["STACKYARD_TOKEN"]
    result = run_cli("env", "list", env=env)
    assert result.code == 6, str(result)
    assert "Not logged in" in result.err and "stackyard login" in result.err


def test_bad_token_is_refused(twin: Twin) -> None:
    result = twin.remote_cli("env", "list", STACKYARD_TOKEN="sy_not-a-token")
    assert result.code == 6, str(result)
    assert "stackyard login" in result.err or "token" in result.err.lower()


@pytest.mark.parametrize(
    "args",
    [
        ("init",),
        ("keys",),
        ("worker",),
        ("daemon",),
        ("state", "list", "dev"),
        ("token", "create", "--user", "x"),
        ("component", "build", "."),
        ("quickstart",),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_local_only_commands_are_refused(twin: Twin, args: tuple[str, ...]) -> None:
    result = twin.remote_cli(*args)
    assert result.code == 2, str(result)
    assert "cannot run through the server" in result.err, str(result)
    assert twin.url in result.err
    assert not (twin.config / "no-home").exists()


def test_login_stores_a_private_config_and_logout_forgets_it(twin: Twin) -> None:
    env = twin.local_env()
    env["STACKYARD_HOME"] = str(twin.config / "no-home")
    bad = run_cli("login", twin.url, "--token", "sy_wrong", env=env)
    assert bad.code == 6, str(bad)
    stored = twin.config / "stackyard" / "remote.json"
    assert not stored.exists()

    done = run_cli("login", twin.url + "/", env=env)
    assert done.code == 2, str(done)  # no terminal and no token: refused, not hung

    done = run_cli("login", twin.url, "--token", twin.token, env=env)
    assert done.code == 0, str(done)
    assert "logged in to" in done.out
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert twin.token not in done.out + done.err

    listed = run_cli("env", "list", "-o", "json", env=env)  # no STACKYARD_URL: the login
    assert listed.code == 0, str(listed)
    assert listed.json() == []
    forced_local = run_cli("env", "list", "-o", "json", env={**env, "STACKYARD_URL": ""})
    assert "cannot run through" not in forced_local.err

    out = run_cli("logout", env=env)
    assert out.code == 0 and not stored.exists()
    anonymous = run_cli("env", "list", env={**env, "STACKYARD_URL": twin.url})
    assert anonymous.code == 6, str(anonymous)  # a URL without any token: log in first


def test_through_the_command_server(twin: Twin, tmp_path: Path) -> None:
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    warm = {"STACKYARD_DAEMON": "1", "STACKYARD_DAEMON_DIR": str(sockets)}
    try:
        for _ in range(2):  # the first run starts the command server, the second is served
            listed = twin.remote_cli("env", "list", "-o", "json", **warm)
            assert listed.code == 0, str(listed)
            assert listed.json() == []
            refused = twin.remote_cli("state", "list", "dev", **warm)
            assert refused.code == 2 and "cannot run through the server" in refused.err
        assert list(sockets.glob("*.sock")), "no command server answered"
        assert not (twin.config / "no-home").exists()  # served remotely, not on a home
    finally:
        stop = {**warm, "STACKYARD_DAEMON": "0", "STACKYARD_URL": ""}
        stopped = run_cli("daemon", "stop", env={**twin.local_env(), **stop})
        assert stopped.code == 0, str(stopped)
