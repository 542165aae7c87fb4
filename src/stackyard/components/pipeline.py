"""The component pipeline: validate → version rules → publish checks → tests → push → attest.

Each stage runs only when every stage before it passed; a failing stage stops the pipeline
and raises ``InvalidInputError`` with all of that stage's diagnostics. The attestation (a DSSE
envelope signed with the home's Ed25519 key) records every stage's result and is pushed as an
OCI referrer of the build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackyard.components import attest
from stackyard.components.keys import Keyring
from stackyard.components.package import build
from stackyard.components.registry import Registry
from stackyard.components.testing import run_tests
from stackyard.diagnostics import Diagnostic, error, has_errors
from stackyard.engine.kinds import Kinds
from stackyard.errors import InvalidInputError
from stackyard.model.component import ComponentManifest, validate_component
from stackyard.resolve.versions import Published, Version, check_new_version, required_inputs

STAGES = ("validate", "versions", "checks", "tests", "push", "attest")


@dataclass
class PublishResult:
    """What a successful publish produced."""

    name: str
    version: str
    digest: str
    attestation: str = ""
    stages: list[attest.StageResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "version", "digest"}`` plus the stages."""
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "attestation": self.attestation,
            "stages": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.stages],
        }


Govern = Callable[[ComponentManifest, list[attest.StageResult]], list[Diagnostic]]
Progress = Callable[[str, str], None]  # (stage, message)


def publish(
    path: Path,
    *,
    registry: Registry,
    keyring: Keyring,
    kinds: Kinds,
    source: str = "",
    run_component_tests: bool = True,
    progress: Progress | None = None,
    govern: Govern | None = None,
) -> PublishResult:
    """Run the pipeline on the component folder ``path`` and publish it to ``registry``.

    ``govern`` is the ``publish`` policy stage: given the manifest and the stage results so
    far, it returns diagnostics (errors stop the publish; warnings are shown).
    """
    say = progress or (lambda _stage, _msg: None)
    stages: list[attest.StageResult] = []

    def passed(stage: str, detail: str) -> None:
        stages.append(attest.StageResult(stage, True, detail))
        say(stage, detail)

    say("validate", f"validating {path}")
    manifest, diags = validate_component(path)
    _stop_if("validate", diags)
    assert manifest is not None
    passed("validate", f"{manifest.ref}: schema and lint clean")

    say("versions", "checking version rules")
    _stop_if("versions", version_rules(manifest, registry))
    passed("versions", f"{manifest.version} is new and compatible")

    say("checks", "publish checks")
    _stop_if("checks", publish_checks(manifest, path))
    passed("checks", "owner, description, SLA and README present")

    if run_component_tests:
        say("tests", "running component tests on the local cloud")
        outcomes = run_tests(path, manifest, kinds=kinds)
        failed = [d for o in outcomes if not o.ok for d in o.diagnostics]
        if not outcomes:
            failed = [
                error(
                    "No component tests",
                    "Add at least one tests/*.yaml to the component.",
                    path="tests",
                )
            ]
        _stop_if("tests", failed)
        passed("tests", f"{len(outcomes)} test(s) passed")
    else:
        stages.append(attest.StageResult("tests", True, "skipped on request"))

    if govern is not None:
        say("policies", "evaluating publish policies")
        verdict = govern(manifest, list(stages))
        _stop_if("policies", verdict)
        for d in verdict:
            say("policies", f"warning: {d.detail}")
        passed("policies", "publish policies passed")

    say("push", "building and pushing")
    built = build(path)
    pushed = registry.push(
        name=manifest.name,
        version=manifest.version,
        config=built.manifest_json,
        layer=built.archive,
        annotations=build_annotations(manifest, source),
    )
    passed("push", f"pushed {pushed.digest}")

    say("attest", "signing the attestation")
    statement = attest.Statement(
        subject_name=manifest.name,
        subject_version=manifest.version,
        subject_digest=pushed.digest,
        stages=tuple(stages),
    )
    envelope = attest.sign(statement, keyring.signing_key())
    ref = registry.push_referrer(
        name=manifest.name,
        subject_digest=pushed.digest,
        subject_size=len(pushed.manifest),
        artifact_type=attest.ARTIFACT_TYPE,
        payload=envelope,
        payload_media_type=attest.ENVELOPE_MEDIA_TYPE,
        annotations={"org.opencontainers.image.created": statement.created},
    )
    stages.append(attest.StageResult("attest", True, f"signed by {keyring.key_id()}"))
    say("attest", f"attestation {ref}")
    return PublishResult(manifest.name, manifest.version, pushed.digest, ref, stages)


def build_annotations(manifest: ComponentManifest, source: str) -> dict[str, str]:
    """The OCI annotations of a build."""
    return {
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.description": manifest.description,
        "dev.stackyard.owner": manifest.owner,
        "dev.stackyard.lifecycle": manifest.lifecycle,
        "dev.stackyard.provides": manifest.provides,
    }


def version_rules(manifest: ComponentManifest, registry: Registry) -> list[Diagnostic]:
    """Check ``manifest``'s version against every published version of its name."""
    try:
        new_version = Version.parse(manifest.version)
    except ValueError as exc:
        return [error("Invalid version", str(exc), path="metadata.version")]
    new = Published(
        new_version,
        manifest.provides,
        required_inputs(manifest.inputs),
        frozenset(manifest.outputs),
    )
    return check_new_version(manifest.name, new, published_versions(manifest.name, registry))


def published_versions(name: str, registry: Registry) -> list[Published]:
    """What the version rules need about each published version (read from config blobs)."""
    out: list[Published] = []
    for tag in registry.tags(name):
        try:
            version = Version.parse(tag)
        except ValueError:
            continue  # not a version tag (e.g. a referrers fallback tag)
        _, manifest = registry.manifest(name, tag)
        config = json.loads(registry.blob(name, manifest["config"]["digest"]))
        spec = config.get("spec", {})
        out.append(
            Published(
                version,
                str(spec.get("provides", {}).get("type", "")),
                required_inputs(spec.get("inputs", {})),
                frozenset(spec.get("outputs", {})),
            )
        )
    return out


def publish_checks(manifest: ComponentManifest, path: Path) -> list[Diagnostic]:
    """Built-in ``publish``-stage checks (until policies arrive): owner, description, SLA, README."""
    out: list[Diagnostic] = []
    if not manifest.owner.strip():
        out.append(
            error("Missing owner", "Set metadata.owner to the owning team.", path="metadata.owner")
        )
    if not manifest.description.strip():
        out.append(
            error(
                "Missing description",
                "Describe the component in metadata.description.",
                path="metadata.description",
            )
        )
    if not manifest.sla:
        out.append(
            error(
                "Missing SLA",
                "Declare spec.sla (availability, support, rpo, rto).",
                path="spec.sla",
            )
        )
    folder = path if path.is_dir() else path.parent
    readme = folder / "README.md"
    if not readme.is_file() or not readme.read_text(encoding="utf-8", errors="replace").strip():
        out.append(
            error(
                "Missing README",
                "Add a README.md: it is the component's page in the catalog.",
                path="README.md",
            )
        )
    return out


def _stop_if(stage: str, diags: Sequence[Diagnostic]) -> None:
    if has_errors(diags):
        raise InvalidInputError(f"Publish stopped at stage '{stage}'", list(diags))
