"""Adoption of component versions (issue 17), on the machine's PostgreSQL and Redis: a
postgres-database-like component published at 1.0.0, 1.1.0 and 2.0.0, three environments
pinned to different versions by their bindings, the report (service, CLI and API), a
deprecation that names who it hits, and a deploy that picks a deprecated build warning."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _as_user import cli
from _platform import Stage, write_platform

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from _apisupport import serving

pytestmark = pytest.mark.integration

COMPONENT = "adopt-database"
#: Each environment's binding for type ``postgres``: the range picks the version.
RANGES = {"dev": "^2", "staging": "~1.1", "prod": "1.0.0"}
PICKED = {"dev": "2.0.0", "staging": "1.1.0", "prod": "1.0.0"}


def score(name: str) -> str:
    return f"""\
apiVersion: score.dev/v1b1
metadata: {{name: {name}}}
containers:
  main:
    image: none
    command: ["sleep", "3600"]
    variables:
      DB_NAME: ${{resources.db.name}}
resources:
  db:
    type: postgres
"""


def _publish_versions(home: Path, tmp_path: Path) -> None:
    """``adopt-database`` (the library's postgres-database under another name) at three
    versions, attested by the home's key."""
    from stackyard import library
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry

    registry = open_registry(None, home=home)
    try:
        for version in ("1.0.0", "1.1.0", "2.0.0"):
            src = tmp_path / f"{COMPONENT}-{version}"
            shutil.copytree(library.path("postgres-database"), src)
            manifest = src / "component.yaml"
            text = manifest.read_text()
            text = text.replace("name: postgres-database", f"name: {COMPONENT}")
            manifest.write_text(text.replace("version: 1.0.0", f"version: {version}"))
            publish(
                src,
                registry=registry,
                keyring=Keyring(home),
                kinds=ProviderRegistry.discover(),
                run_component_tests=False,
            )
    finally:
        registry.close()


def _bind(platform: Path, prefix: str) -> None:
    """Each environment binds ``postgres`` to ``adopt-database`` at its own range."""
    path = platform / "environments.yaml"
    docs = path.read_text().split("---\n")
    for i, doc in enumerate(docs):
        for stage, rng in RANGES.items():
            if f"name: {prefix}-{stage}}}" in doc:
                line = f"    - {{type: postgres, component: {COMPONENT}@{rng}}}\n"
                docs[i] = doc.replace("  bindings:\n", "  bindings:\n" + line)
    path.write_text("---\n".join(docs))


@pytest.fixture
def fleet(
    library_home: Path,
    tmp_path: Path,
    sweeper: Any,
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Stage]:
    """dev, staging and prod, each running workload ``checkout`` on its version."""
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.platform import apply_dir

    _publish_versions(library_home, tmp_path)
    plat = write_platform(
        tmp_path / "platform", sweeper.env, pg_url=postgres_admin_url, redis_url=redis_url
    )
    _bind(plat, sweeper.env)
    st = Stage(library_home, sweeper.env, plat)
    checkout = tmp_path / "checkout.yaml"
    checkout.write_text(score("checkout"))
    try:
        with st.ws() as ws:
            apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
            for stage in RANGES:
                lifecycle.create(ws, st.name(stage))
                done = deploy_files(ws, [checkout], st.name(stage), confirm=lambda _p: True)
                assert done.deployment.status == "succeeded", done.deployment
                assert done.lock["postgres.default#checkout.db"].version == PICKED[stage]
        yield st
    finally:
        st.teardown()


def _versions(report: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    (comp,) = [c for c in report["components"] if c["name"] == name]
    return {v["version"]: v for v in comp["versions"]}


def test_three_environments_on_three_versions_with_a_deprecated_one(
    fleet: Stage, tmp_path: Path
) -> None:
    from stackyard.environments.adoption import adoption
    from stackyard.environments.deploy import deploy_files

    dev, staging, prod = (fleet.name(s) for s in ("dev", "staging", "prod"))
    deprecated = cli(
        fleet.home,
        "component",
        "deprecate",
        f"{COMPONENT}@1.0.0",
        "--reason",
        "move to 2.x",
        "--output",
        "json",
    )
    assert deprecated.returncode == 0, deprecated.stderr
    hit = json.loads(deprecated.stdout)["affected"]
    assert [(u["env"], u["uid"], u["workloads"], u["owner"]) for u in hit] == [
        (prod, "postgres.default#checkout.db", ["checkout"], "team-checkout")
    ]
    text = cli(
        fleet.home, "component", "deprecate", f"{COMPONENT}@1.0.0", "--reason", "move to 2.x"
    )
    assert text.returncode == 0, text.stderr
    assert f"{prod} (team-checkout): postgres.default#checkout.db, used by checkout" in text.stdout

    with fleet.ws() as ws:
        report = adoption(ws, COMPONENT).to_json()
    versions = _versions(report, COMPONENT)
    assert list(versions) == ["1.0.0", "1.1.0", "2.0.0"]
    old, mid, new = versions["1.0.0"], versions["1.1.0"], versions["2.0.0"]
    # where each runs
    assert [(u["env"], u["workloads"]) for u in old["uses"]] == [(prod, ["checkout"])]
    assert [(u["env"], u["workloads"]) for u in mid["uses"]] == [(staging, ["checkout"])]
    assert [(u["env"], u["workloads"]) for u in new["uses"]] == [(dev, ["checkout"])]
    # how far behind: the latest compatible is 1.1.0 for both 1.x, the latest major 2.0.0
    assert (old["standing"], old["latest_compatible"], old["behind_major"]) == (
        "behind-compatible",
        "1.1.0",
        True,
    )
    assert (mid["standing"], mid["latest_compatible"], mid["behind_compatible"]) == (
        "behind-major",
        "1.1.0",
        False,
    )
    assert (new["standing"], new["latest"], new["behind_major"]) == ("latest", "2.0.0", False)
    # the deprecated one, with its owners
    assert (old["deprecated"], old["deprecation"]) == (True, "move to 2.x")
    assert not mid["deprecated"] and not new["deprecated"]
    (stale,) = report["deprecated_in_use"]
    assert (stale["component"], stale["version"], stale["owners"]) == (
        COMPONENT,
        "1.0.0",
        ["team-checkout"],
    )
    assert stale["uses"][0]["workloads"] == ["checkout"]

    # the same report from the CLI, as JSON and as text
    shown = cli(fleet.home, "catalog", "adoption", COMPONENT, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    # the CLI adds whether each version misses its SLO (ops.slo.flag_adoption): no probe ran
    # here, so none does; without those keys it is the service's report
    printed = json.loads(shown.stdout)
    for comp in printed["components"]:
        for version in comp["versions"]:
            assert version.pop("slo") == {"missed_in": []}
            for use in version["uses"]:
                assert use.pop("slo_missed") is False
    assert printed == report
    table = cli(fleet.home, "catalog", "adoption", COMPONENT)
    assert table.returncode == 0, table.stderr
    assert "Deprecated versions still in use" in table.stdout
    assert f"{COMPONENT}@1.0.0 (move to 2.x) · owners: team-checkout" in table.stdout

    # a deploy that picks the deprecated build warns; one that does not, does not
    billing = tmp_path / "billing.yaml"
    billing.write_text(score("billing"))
    with fleet.ws() as ws:
        warned = deploy_files(ws, [billing], prod, confirm=lambda _p: True)
        quiet = deploy_files(ws, [billing], staging, confirm=lambda _p: True)
    assert warned.deployment.status == "succeeded"
    (warning,) = [d for d in warned.diagnostics if d.summary == "Deprecated component version"]
    assert warning.severity == "warning"
    assert f"{COMPONENT}@1.0.0 is deprecated (move to 2.x)" in warning.detail
    assert "'postgres.default#billing.db'" in warning.detail
    assert "'postgres.default#checkout.db'" in warning.detail
    assert not [d for d in quiet.diagnostics if d.summary == "Deprecated component version"]
    assert "Deprecated component version" in json.dumps(warned.to_json()["warnings"])


def test_workloads_reach_core_instances_through_requirements(fleet: Stage) -> None:
    from stackyard.environments.adoption import adoption

    with fleet.ws() as ws:
        report = adoption(ws).to_json()
    # postgres-external is each environment's core server, which checkout's database requires
    (external,) = _versions(report, "postgres-external").values()
    assert {(u["env"], u["core"], tuple(u["workloads"])) for u in external["uses"]} == {
        (fleet.name(s), True, ("checkout",)) for s in RANGES
    }
    # published but unused versions are listed, with no uses
    unused = _versions(report, "local-volume")["1.0.0"]
    assert unused["uses"] == [] and unused["standing"] == "latest"
    assert report["deprecated_in_use"] == []


def test_an_unknown_component_is_not_found(fleet: Stage) -> None:
    res = cli(fleet.home, "catalog", "adoption", "no-such-component")
    assert res.returncode == 2
    assert "No published component 'no-such-component'" in res.stderr


def test_the_api_serves_the_same_report(fleet: Stage) -> None:
    from stackyard.environments.adoption import adoption
    from stackyard.identity import tokens
    from stackyard.ops.slo import flag_adoption
    from stackyard.settings import Settings

    settings = Settings.load()
    with fleet.ws() as ws:
        token = tokens.create(ws, user=settings.actor, ttl="1h").token
        expected = flag_adoption(ws, adoption(ws, COMPONENT).to_json())  # as the CLI shows
    with (
        serving(settings, worker=False) as (url, _logs),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client,
    ):
        got = client.get("/api/v1/catalog/adoption", params={"name": COMPONENT})
        assert got.status_code == 200, got.text
        assert got.json() == expected
        missing = client.get("/api/v1/catalog/adoption", params={"name": "no-such-component"})
        assert missing.status_code >= 400
        anonymous = httpx.get(f"{url}/api/v1/catalog/adoption", timeout=60)
        assert anonymous.status_code == 401
        # the remote CLI renders the server's report
        remote = cli(
            fleet.home,
            "catalog",
            "adoption",
            COMPONENT,
            "--output",
            "json",
            STACKYARD_URL=url,
            STACKYARD_TOKEN=token,
        )
        assert remote.returncode == 0, remote.stderr
        assert json.loads(remote.stdout) == expected
