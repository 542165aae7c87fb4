"""The component pipeline: validate → version rules → publish checks → tests → push → attest.

Each stage runs only when every stage before it passed; a failing stage stops the pipeline
and raises ``InvalidInputError`` with all of that stage's diagnostics. The attestation (a DSSE
envelope signed with the home's Ed25519 key) records every stage's result and is pushed as an
OCI referrer of the build.

A build's ``org.opencontainers.image.source`` is the URL of the git remote of the component's
folder (credentials removed), or absent: never a local path, which would tell the reader of a
registry nothing but the publisher's file system.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stackyard.components import attest
from stackyard.components.catalog import usable
from stackyard.components.keys import Keyring
from stackyard.components.package import build
from stackyard.components.registry import Registry
from stackyard.components.testing import TestOutcome, run_tests
from stackyard.diagnostics import Diagnostic, error, has_errors
from stackyard.engine.kinds import Kinds
from stackyard.errors import InvalidInputError
from stackyard.model.component import ComponentManifest, validate_component
from stackyard.model.versions import Published, Version, check_new_version, required_inputs

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
    source: str | None = None,
    run_component_tests: bool = True,
    progress: Progress | None = None,
    govern: Govern | None = None,
    tested: Sequence[TestOutcome] | None = None,
) -> PublishResult:
    """Run the pipeline on the component folder ``path`` and publish it to ``registry``.

    ``source`` is where the component's source lives, as a URL; None looks up the git remote
    of ``path`` (``source_url``). Anything that is not an http(s), ssh or git URL is left out.

    ``govern`` is the ``publish`` policy stage: given the manifest and the stage results so
    far, it returns diagnostics (errors stop the publish; warnings are shown).

    ``tested`` are the outcomes of this folder's component tests when they were run already
    (``init`` runs the library's side by side); they count as the ``tests`` stage.
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
        outcomes = list(tested) if tested is not None else run_tests(path, manifest, kinds=kinds)
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
        remembered = [o.cached_at for o in outcomes if o.cached_at is not None]
        if remembered:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(remembered)))
            passed(
                "tests",
                f"{len(outcomes)} test(s) passed on this machine with this code at {when}",
            )
        else:
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
        annotations=build_annotations(
            manifest, source_url(path) if source is None else as_source_url(source)
        ),
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


def build_annotations(manifest: ComponentManifest, source: str | None) -> dict[str, str]:
    """The OCI annotations of a build (``source``, a URL, only when there is one)."""
    return {
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **({"org.opencontainers.image.source": source} if source else {}),
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
    """What the version rules need about each published build of ``name`` (read from config
    blobs; a tag that is not one of our builds, or that names another version, is not one)."""
    return [
        Published(
            Version.parse(b.version),
            b.component.provides,
            required_inputs(b.component.inputs),
            frozenset(b.component.outputs),
        )
        for b in usable(registry, name, warn=lambda _m: None)
    ]


_SOURCE_SCHEMES = ("https", "http", "ssh", "git", "git+ssh")
#: ``user@host:path``, git's scp-like form of an ssh URL.
_SCP_LIKE = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\\]+)$"
)


def as_source_url(text: str) -> str | None:
    """``text`` as a source URL without credentials, query or fragment; None when it is not
    an http(s), ssh or git URL (a local path, a ``file:`` URL, a description)."""
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme in _SOURCE_SCHEMES and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{parts.port}" if parts.port else "")
        if parts.scheme in ("ssh", "git+ssh") and parts.username:
            netloc = f"{parts.username}@{netloc}"  # a login name; a password never stays
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    match = _SCP_LIKE.match(text)
    if match and "." in match["host"]:  # a host name, not a drive letter or a word
        user = f"{match['user']}@" if match["user"] else ""
        return f"ssh://{user}{match['host']}/{match['path'].lstrip('/')}"
    return None


def source_url(folder: Path) -> str | None:
    """The URL of the ``origin`` remote of the git repository holding ``folder``, if any.

    Only git's configuration is read (``git config``), so nothing in the repository runs.
    """
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(folder), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return as_source_url(done.stdout) if done.returncode == 0 else None


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
