"""The Backstage catalog export (issue 18, part 4): the entities of a real home (a team's
environment and an ownerless one, each running a workload) validate against Backstage's own
``@backstage/catalog-model`` (from npm), a broken entity does not, the export is stable and
carries no secret, and ``stackyard catalog export`` prints it, writes it atomically and refuses
what it cannot do."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from _apisupport import ADMIN
from _backstagesupport import LONG_NAME, Site, validate

from _as_user import cli
from _cli import finished, ok

pytestmark = pytest.mark.integration


def _export(site: Site, env: str | None = None) -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.integrations import backstage

    with Workspace.open(site.as_admin()) as ws:
        return backstage.export(ws, env=env)


def _by(entities: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {e["metadata"]["name"]: e for e in entities if e["kind"] == kind}


def _instances(site: Site, env: str) -> dict[str, Any]:
    from stackyard.environments.workspace import Workspace

    with Workspace.open(site.as_admin()) as ws:
        return ws.records.instances(env)


def test_the_export_is_valid_backstage_and_says_who_owns_what(site: Site) -> None:
    from stackyard.integrations.backstage import PLATFORM_GROUP, entity_name, resource_name

    entities = list(_export(site).entities)
    verdicts = validate(entities)
    assert [v for v in verdicts if not v["valid"]] == []

    groups, systems = _by(entities, "Group"), _by(entities, "System")
    resources, components = _by(entities, "Resource"), _by(entities, "Component")
    # a group per team, the platform's group (``other`` has no owner) and the components'
    # owner, which no Team document declares
    assert set(groups) == {"team-checkout", PLATFORM_GROUP, "team-platform"}
    assert groups["team-checkout"]["metadata"]["annotations"]["stackyard.dev/declared"] == "true"
    assert groups["team-platform"]["metadata"]["annotations"]["stackyard.dev/declared"] == "false"
    assert set(systems) == {site.env, site.other}
    assert systems[site.env]["spec"]["owner"] == "group:default/team-checkout"
    assert systems[site.other]["spec"]["owner"] == f"group:default/{PLATFORM_GROUP}"

    # a Resource per instance: the component's type and owner, the environment's system
    expected = {
        resource_name(env, uid): (env, uid, rec)
        for env in (site.env, site.other)
        for uid, rec in _instances(site, env).items()
    }
    assert set(resources) == set(expected)
    for name, (env, uid, rec) in expected.items():
        spec, meta = resources[name]["spec"], resources[name]["metadata"]
        assert spec["type"] == uid.partition(".")[0]
        assert spec["owner"] == "group:default/team-platform"
        assert spec["system"] == f"system:default/{env}"
        assert meta["annotations"]["stackyard.dev/resource-uid"] == uid
        assert meta["annotations"]["stackyard.dev/component"] == rec.component
        assert meta["labels"]["stackyard.dev/environment"] == env
    assert {r["spec"]["type"] for r in resources.values()} == {"volume", "canary"}

    # a Component per workload, depending on exactly the resources it requests
    reader = components[f"{site.env}.reader"]
    assert reader["spec"]["type"] == "service"
    assert reader["spec"]["lifecycle"] == "experimental"  # the lite type is no production
    assert reader["spec"]["owner"] == "group:default/team-checkout"
    assert reader["spec"]["system"] == f"system:default/{site.env}"
    wanted = sorted(
        f"resource:default/{resource_name(site.env, uid)}" for uid in _instances(site, site.env)
    )
    assert reader["spec"]["dependsOn"] == wanted
    (long_one,) = [n for n in components if n != f"{site.env}.reader"]
    assert long_one == entity_name(site.other, LONG_NAME)
    assert len(long_one) <= 63 and long_one.startswith(site.other)  # cut and hashed
    assert components[long_one]["metadata"]["annotations"]["stackyard.dev/workload"] == LONG_NAME

    # the kinds in a stable order: groups, systems, resources, components
    kinds = [e["kind"] for e in entities]
    assert kinds == sorted(kinds, key=["Group", "System", "Resource", "Component"].index)


def test_backstage_rejects_a_broken_entity(site: Site) -> None:
    entities = list(_export(site).entities)
    component = next(e for e in entities if e["kind"] == "Component")
    resource = next(e for e in entities if e["kind"] == "Resource")
    bad_name = copy.deepcopy(resource)
    bad_name["metadata"]["name"] = "volume.default#data"  # a uid as it is: '#' is not allowed
    no_lifecycle = copy.deepcopy(component)
    del no_lifecycle["spec"]["lifecycle"]
    bad_ref = copy.deepcopy(component)
    bad_ref["spec"]["dependsOn"] = ["no-kind-here"]
    verdicts = validate([component, bad_name, no_lifecycle, bad_ref])
    assert [v["valid"] for v in verdicts] == [True, False, False, False], verdicts
    assert "metadata.name" in " ".join(verdicts[1]["errors"])
    assert "lifecycle" in " ".join(verdicts[2]["errors"])
    assert "dependsOn" in " ".join(verdicts[3]["errors"])


#: Identities whose entity names are derived: (parts, reason).
NAMES = [
    (("dev", "postgres", "default", "checkout.db"), "valid as it is: kept readable"),
    (("dev", "Postgres", "default", "x"), "upper case: references ignore case"),
    (("env-" + "x" * 40, "volume", "default", "a." * 20 + "b"), "too long: cut and hashed"),
    (("ann@example.com",), "an owner that is an e-mail address"),
    (("-", "_"), "nothing but separators"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("parts", "reason"), NAMES, ids=[r.split(":")[0] for _, r in NAMES])
def test_derived_names_are_stable_short_and_distinct(parts: tuple[str, ...], reason: str) -> None:
    from stackyard.integrations.backstage import entity_name

    name = entity_name(*parts)
    assert name == entity_name(*parts), reason
    assert len(name) <= 63, reason
    if reason.startswith("valid"):
        assert name == ".".join(parts)
    # a change anywhere in the identity changes the name
    assert entity_name(*parts[:-1], parts[-1] + "0") != name, reason
    assert entity_name("0" + parts[0], *parts[1:]) != name, reason


def test_backstage_accepts_every_derived_name() -> None:
    from stackyard.integrations.backstage import entity_name

    names = [entity_name(*parts) for parts, _ in NAMES]
    entities = [
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": name},
            "spec": {"type": "team", "children": []},
        }
        for name in names
    ]
    verdicts = validate(entities)
    assert [(n, v["valid"]) for n, v in zip(names, verdicts, strict=True)] == [
        (n, True) for n in names
    ], verdicts


@pytest.mark.unit
@pytest.mark.parametrize(
    ("env_type", "ephemeral", "last_stage", "want", "reason"),
    [
        ("production", False, False, "production", "a production type"),
        ("prod", False, False, "production", "the short name"),
        ("lite", False, True, "production", "the last stage of a promotion path"),
        ("lite", False, False, "experimental", "any other type"),
        ("production", True, False, "experimental", "an ephemeral type never is"),
    ],
    ids=["production", "prod", "last-stage", "other", "ephemeral"],
)
def test_the_lifecycle_comes_from_the_environment_type(
    env_type: str, ephemeral: bool, last_stage: bool, want: str, reason: str
) -> None:
    from stackyard.environments.platform import Platform
    from stackyard.integrations.backstage import lifecycle_of
    from stackyard.model.environment import Environment, EnvironmentStatus
    from stackyard.model.platform import EnvironmentType, PromotionPath

    env = Environment("live", env_type, EnvironmentStatus.READY)
    stages = ("dev", "live") if last_stage else ("live", "later")
    platform = Platform(
        types={env_type: EnvironmentType(env_type, ephemeral=ephemeral)},
        paths={"main": PromotionPath("main", stages)},
    )
    assert lifecycle_of(platform, env) == want, reason


def test_the_export_is_stable_and_holds_no_secret_or_output(site: Site) -> None:
    first, second = _export(site), _export(site)
    text = first.to_yaml()
    assert text == second.to_yaml()
    dumped = text + json.dumps(first.to_json())
    recorded = [rec for env in (site.env, site.other) for rec in _instances(site, env).values()]
    secrets = [str(v) for rec in recorded for v in rec.outputs.values() if len(str(v)) >= 8]
    assert any(len(s) >= 40 for s in secrets)  # the canary's token is among them
    for value in secrets:
        assert value not in dumped
    assert "outputs" not in dumped and "params" not in dumped


def test_the_export_shows_only_what_the_caller_may_view(site: Site) -> None:
    import dataclasses

    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace
    from stackyard.errors import PermissionDeniedError
    from stackyard.integrations import backstage

    with Workspace.open(site.as_admin()) as ws:
        grants.grant(
            ws, grants.parse("viewer", user="vic", team=None, env=site.other, env_type=None)
        )
    as_vic = dataclasses.replace(site.settings, actor="vic")
    with Workspace.open(as_vic) as ws:
        mine = backstage.export(ws, env=site.other).entities
        with pytest.raises(PermissionDeniedError):
            backstage.export(ws)  # the whole catalog is the organisation's
        with pytest.raises(PermissionDeniedError):
            backstage.export(ws, env=site.env)
    assert {e["metadata"]["annotations"].get("stackyard.dev/environment") for e in mine} <= {
        site.other,
        None,
    }
    assert {e["metadata"]["name"] for e in mine if e["kind"] == "System"} == {site.other}


def test_the_cli_prints_and_writes_the_same_catalog(site: Site, tmp_path: Path) -> None:
    printed = ok(finished(*_run(site, "catalog", "export", "--format", "backstage")))
    docs = [d for d in yaml.safe_load_all(printed.out) if d is not None]
    assert docs == json.loads(json.dumps(list(_export(site).entities)))

    target = tmp_path / "out" / "catalog"  # made when missing
    wrote = ok(
        finished(
            *_run(
                site,
                "catalog",
                "export",
                "--format",
                "backstage",
                "--to",
                str(target),
                "-o",
                "json",
            )
        )
    )
    summary = wrote.json()
    assert summary["path"] == str(target / "catalog-info.yaml")
    assert summary["entities"]["Component"] == 2 and summary["entities"]["System"] == 2
    assert (target / "catalog-info.yaml").read_text() == printed.out
    assert sorted(p.name for p in target.iterdir()) == ["catalog-info.yaml"]  # no temp file

    only = ok(
        finished(
            *_run(
                site,
                "catalog",
                "export",
                "--format",
                "backstage",
                "--env",
                site.other,
                "-o",
                "json",
            )
        )
    ).json()["entities"]
    assert {e["metadata"]["name"] for e in only if e["kind"] == "System"} == {site.other}
    assert {e["spec"]["system"] for e in only if "system" in e["spec"]} == {
        f"system:default/{site.other}"
    }


def test_the_cli_refuses_and_writes_nothing(site: Site, tmp_path: Path) -> None:
    unknown = finished(*_run(site, "catalog", "export", "--format", "port", "--to", str(tmp_path)))
    assert unknown.code == 2 and "--format" in unknown.err, str(unknown)

    a_file = tmp_path / "taken"
    a_file.write_text("mine\n")
    refused = finished(
        *_run(site, "catalog", "export", "--format", "backstage", "--to", str(a_file))
    )
    assert refused.code == 2 and "is a file" in refused.err, str(refused)
    assert a_file.read_text() == "mine\n"

    missing = tmp_path / "never"
    no_env = finished(
        *_run(
            site,
            "catalog",
            "export",
            "--format",
            "backstage",
            "--env",
            "nope",
            "--to",
            str(missing),
        )
    )
    assert no_env.code == 2 and "nope" in no_env.err, str(no_env)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def _run(site: Site, *args: str) -> tuple[tuple[str, ...], int, str, str]:
    done = cli(site.home, *args, user=ADMIN)
    return args, done.returncode, done.stdout, done.stderr
