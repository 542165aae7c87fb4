"""Job handlers: each kind opens a workspace as the job's actor and calls the CLI's service
function, so RBAC, policies, approvals and audit apply exactly as on the command line.

A handler returns the JSON the CLI prints with ``--output json``, and reports progress
through ``emit`` (the job's events). A failure is classified once, here: transient (retry
the job later) or permanent (the job fails), with the masked error document the job keeps.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from stackyard.errors import (
    ApplyFailedError,
    InvalidInputError,
    LockHeldError,
    LockLostError,
    ProviderError,
    StackyardError,
    StoreUnavailableError,
)
from stackyard.jobs.model import KINDS, Job

if TYPE_CHECKING:
    from stackyard.components.registry import Registry
    from stackyard.environments.workspace import Workspace
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.settings import Settings
    from stackyard.state.sql import SqlStateStore

__all__ = ["Emit", "Outcome", "check_args", "env_of", "error_document", "run"]

log = logging.getLogger("stackyard.jobs")

Emit = Callable[[str], None]

#: ``exit_code`` -> title of the error document (the API's problem titles).
_TITLES = {
    1: "Internal error",
    2: "Invalid input",
    3: "Stale plan",
    4: "Environment locked",
    5: "Denied by policy",
    6: "Not permitted",
    7: "A backend failed",
    8: "Verification failed",
    9: "Missing attestation",
    10: "Cancelled",
}
#: The argument keys each kind accepts (``KINDS`` names the required ones).
_ALLOWED: Mapping[str, frozenset[str]] = {
    "deploy": frozenset({"env", "scores", "files", "release", "plan_only"}),
    "env.create": frozenset({"name", "type", "parent", "ttl", "owner"}),
    "env.destroy": frozenset({"name"}),
    "promote": frozenset({"release", "to", "plan_only"}),
    "approve": frozenset({"deployment", "reason"}),
    "reap": frozenset(),
    "drift.fix": frozenset({"envs", "parallelism"}),
    "adopt": frozenset({"env", "address"}),
    "env.repair": frozenset({"name"}),
    "upgrade": frozenset({"component", "to", "envs", "env_types"}),
    "remove": frozenset({"env", "workload", "resource"}),
}


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ended: its ``result``, or its ``error`` document and whether
    the failure was ``transient`` (retrying the job may help)."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    transient: bool = False

    @property
    def ok(self) -> bool:
        """True when the operation returned."""
        return self.error is None


def check_args(kind: str, args: Mapping[str, Any]) -> None:
    """Refuse an unknown kind, or arguments it does not take (``InvalidInputError``)."""
    if kind not in KINDS:
        raise InvalidInputError(
            f"Unknown job kind '{kind}'", hint=f"Use one of: {', '.join(sorted(KINDS))}."
        )
    missing = [k for k in KINDS[kind] if not args.get(k)]
    unknown = sorted(set(args) - _ALLOWED[kind])
    if missing or unknown:
        raise InvalidInputError(
            f"Invalid arguments for a '{kind}' job"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            hint=f"A '{kind}' job takes: {', '.join(sorted(_ALLOWED[kind])) or 'nothing'}.",
        )
    if kind == "deploy" and bool(args.get("scores")) == bool(args.get("release")):
        raise InvalidInputError(
            "Give Score files or a release, not both or neither",
            hint='A deploy job takes {"env", "scores": {name: text}} or {"env", "release"}.',
        )
    if kind == "remove" and bool(args.get("workload")) == bool(args.get("resource")):
        raise InvalidInputError(
            "Give a workload or a resource, not both or neither",
            hint='A remove job takes {"env", "workload"} or {"env", "resource"}.',
        )


def env_of(kind: str, args: Mapping[str, Any]) -> str | None:
    """The environment a job of ``kind`` works on (its serialisation key), if one."""
    if kind == "drift.fix":  # one named environment: its key; several or all: none
        envs = list(args.get("envs") or ())
        return str(envs[0]) if len(envs) == 1 else None
    key = {
        "deploy": "env",
        "env.create": "name",
        "env.destroy": "name",
        "promote": "to",
        "adopt": "env",
        "env.repair": "name",
        "remove": "env",
    }.get(kind)
    value = args.get(key) if key else None
    return str(value) if value else None


def run(settings: Settings, job: Job, emit: Emit) -> Outcome:
    """Run ``job`` as its actor: its result JSON, or its classified failure."""
    from stackyard.environments.workspace import Workspace

    acting = _as_actor(settings, job)
    retried: set[str] = set()

    def said(message: str) -> None:
        # The engine retries a transient provider failure in place and says so; an apply
        # that still fails on those addresses failed transiently (see ``_classify``).
        parts = message.split()
        if len(parts) >= 3 and parts[0] == "retrying":
            retried.add(parts[2])
        emit(message)

    key = _key(acting)
    try:
        store, registry, kinds = _parts(acting)
        try:
            ws = Workspace(acting, store, registry, kinds)  # shared parts: not closed per job
            return Outcome(result=_HANDLERS[job.kind](ws, dict(job.args), said))
        finally:
            _release(key)
    except StackyardError as exc:
        return _classify(exc, retried)
    except Exception as exc:
        # A bug: the job says so in fixed words (no message, which could hold anything);
        # the traceback goes to the worker's log.
        log.exception("job %s (%s) failed with an unexpected error", job.id, job.kind)
        return Outcome(
            error={
                "type": type(exc).__name__,
                "title": _TITLES[1],
                "detail": "Internal error",
                "exit_code": 1,
                "diagnostics": [],
                "hint": "This is a bug in stackyard: the worker's log has the details.",
            }
        )


#: The state store, registry and provider kinds of each home a worker process serves, opened
#: once and shared by its jobs (each job gets its own workspace on them, as its own actor):
#: a store per job held a pool of connections per job, and a few workers exhausted
#: PostgreSQL's connections. Closed when the process exits.
_SHARED: dict[tuple[str, str, str | None, bool], tuple[Any, Any, Any]] = {}
_SHARED_LOCK = threading.Lock()
#: Jobs running on each shared entry; an idle entry beyond the most recent few is closed.
_IN_USE: dict[tuple[str, str, str | None, bool], int] = {}
_KEEP = 4


def _key(settings: Settings) -> tuple[str, str, str | None, bool]:
    return (
        str(settings.home),
        settings.database_url,
        settings.registry,
        settings.registry_plain_http,
    )


def _release(key: tuple[str, str, str | None, bool]) -> None:
    """A job is done with ``key``'s parts; close idle ones past the most recent ``_KEEP``."""
    with _SHARED_LOCK:
        _IN_USE[key] = max(0, _IN_USE.get(key, 1) - 1)
        for old in list(_SHARED)[: max(0, len(_SHARED) - _KEEP)]:
            if _IN_USE.get(old, 0) == 0:
                store, registry, _kinds = _SHARED.pop(old)
                _IN_USE.pop(old, None)
                try:
                    registry.close()
                finally:
                    store.close()


def _parts(settings: Settings) -> tuple[SqlStateStore, Registry, ProviderRegistry]:
    """The shared store, registry and kinds of ``settings``' home (opened on first use).
    Never bootstraps an admin: a job's actor was admitted by the service layer already."""
    key = (
        str(settings.home),
        settings.database_url,
        settings.registry,
        settings.registry_plain_http,
    )
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is not None:
            return found
        from stackyard.components.registry import open_registry
        from stackyard.home import enforce_private
        from stackyard.providers.registry import ProviderRegistry
        from stackyard.state import open_store

        if not (settings.home / "state.db").exists() and settings.database_url.startswith("sqlite"):
            raise InvalidInputError(
                f"No stackyard home at {settings.home}",
                hint="Run 'stackyard init' on the worker's home first.",
            )
        try:
            enforce_private(settings.home)
            store = open_store(settings)
            try:
                registry = open_registry(
                    settings.registry, home=settings.home, plain_http=settings.registry_plain_http
                )
            except BaseException:
                store.close()
                raise
        except BaseException:
            _IN_USE[key] -= 1
            raise
        if not _SHARED:
            atexit.register(_close_shared)
        _SHARED[key] = (store, registry, ProviderRegistry.discover())
        return _SHARED[key]


def _close_shared() -> None:
    with _SHARED_LOCK:
        for store, registry, _kinds in _SHARED.values():
            try:
                registry.close()
            finally:
                store.close()
        _SHARED.clear()


def _as_actor(settings: Settings, job: Job) -> Settings:
    names = {f.name for f in dataclasses.fields(settings)}
    extra: dict[str, Any] = {"teams": tuple(job.teams)} if "teams" in names else {}
    return dataclasses.replace(settings, actor=job.actor, **extra)


def error_document(exc: StackyardError) -> dict[str, Any]:
    """The job's error: what the CLI and the API's problem details say (messages hold no
    secret by the conventions every ``StackyardError`` follows)."""
    diagnostics = getattr(exc, "diagnostics", ()) or ()
    doc: dict[str, Any] = {
        "type": type(exc).__name__,
        "title": _TITLES.get(exc.exit_code, _TITLES[1]),
        "detail": exc.message,
        "exit_code": exc.exit_code,
        "diagnostics": [d.to_json() for d in diagnostics],
        "hint": exc.hint,
    }
    decision = getattr(exc, "decision_id", "")
    if decision:
        doc["decision"] = decision
    return doc


def _classify(exc: StackyardError, retried: set[str]) -> Outcome:
    doc = error_document(exc)
    transient = isinstance(exc, StoreUnavailableError | LockHeldError | LockLostError) or (
        isinstance(exc, ProviderError) and exc.transient
    )
    if isinstance(exc, ApplyFailedError) and exc.failed:
        # Every failed change was retried by the engine: its provider called the failure
        # transient each time, so a later attempt of the whole job may succeed.
        transient = set(exc.failed) <= retried
    return Outcome(error=doc, transient=transient)


# -- the kinds -------------------------------------------------------------------------------


def _deploy(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.promotion import deploy_release

    env, plan_only = str(args["env"]), bool(args.get("plan_only", False))
    if args.get("release"):
        result = deploy_release(ws, str(args["release"]), env, plan_only=plan_only, progress=emit)
        return result.to_json()
    scores: Mapping[str, Any] = args.get("scores") or {}
    files: Mapping[str, Any] = args.get("files") or {}
    # The texts go to a private folder for the call: Score files name their neighbours
    # (a workload's source files) relative to themselves.
    with tempfile.TemporaryDirectory(prefix="stackyard-job-") as tmp:
        folder = Path(tmp)
        for name, text in {**files, **scores}.items():
            (folder / _safe_name(name)).write_text(str(text), encoding="utf-8")
        paths = [folder / _safe_name(n) for n in scores]
        return deploy_files(ws, paths, env, plan_only=plan_only, progress=emit).to_json()


def _safe_name(name: str) -> str:
    """A file name inside the job's folder: a plain name, never a path out of it."""
    pure = PurePosixPath(name)
    if len(pure.parts) != 1 or pure.name in ("", ".", "..") or "\\" in name or "\0" in name:
        raise InvalidInputError(
            f"Invalid file name {name!r}",
            hint="Name each file by a plain name, such as score.yaml.",
        )
    return pure.name


def _env_create(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import lifecycle
    from stackyard.model.platform import parse_duration

    ttl = args.get("ttl")
    try:
        ttl_s = None if ttl is None else parse_duration(str(ttl))
    except ValueError as exc:
        raise InvalidInputError(f"Invalid ttl: {exc}", hint="Use forms like 30m, 4h, 2d.") from None
    env, result, created = lifecycle.create(
        ws,
        str(args["name"]),
        type_name=args.get("type"),
        parent=args.get("parent"),
        ttl_s=ttl_s,
        owner=args.get("owner"),
        progress=emit,
    )
    return {
        "environment": env.to_json(),
        "created": created,
        "core": result.to_json() if result else None,
    }


def _env_destroy(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import lifecycle

    return lifecycle.destroy(ws, str(args["name"]), progress=emit).to_json()


def _promote(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import promotion

    result = promotion.promote(
        ws,
        str(args["release"]),
        str(args["to"]),
        plan_only=bool(args.get("plan_only", False)),
        progress=emit,
    )
    return result.to_json()


def _approve(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments.approvals import approve

    result = approve(
        ws, str(args["deployment"]), comment=str(args.get("reason") or ""), progress=emit
    )
    out: dict[str, Any] = result.to_json()
    return out


def _reap(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import lifecycle

    return lifecycle.reap(ws, progress=emit)


def _drift_fix(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import drift

    envs = args.get("envs")
    names = None if envs is None else [str(e) for e in envs]
    parallelism = int(args.get("parallelism") or drift.DEFAULT_PARALLELISM)
    return drift.fix(ws, names, parallelism=parallelism, progress=emit).to_json()


def _adopt(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments import drift

    return drift.adopt(ws, str(args["env"]), str(args["address"]), progress=emit).to_json()


def _env_repair(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from stackyard.environments.repair import repair

    return repair(ws, str(args["name"]), progress=emit).to_json()


def _upgrade(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """The campaign's JSON, with ``exit_code``: the stopped step's (else 0), which the CLI
    exits with (a step's failure is reported in the campaign, not raised)."""
    from stackyard.environments import upgrade

    campaign = upgrade.upgrade(
        ws,
        str(args["component"]),
        str(args["to"]),
        envs=[str(e) for e in args.get("envs") or ()],
        env_types=[str(t) for t in args.get("env_types") or ()],
        progress=emit,
    )
    stop = campaign.stopped_at
    return {**campaign.to_json(), "exit_code": stop.exit_code if stop is not None else 0}


def _remove(ws: Workspace, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Take a workload out of an environment, or destroy a resource no live workload uses
    (``stackyard remove -o json``)."""
    from stackyard.environments import lifecycle

    env = str(args["env"])
    if args.get("resource"):
        return lifecycle.destroy_resource(ws, env, str(args["resource"]), progress=emit).to_json()
    return lifecycle.remove_workload(ws, env, str(args["workload"]), progress=emit).to_json()


_HANDLERS: Mapping[str, Callable[[Workspace, dict[str, Any], Emit], dict[str, Any]]] = {
    "deploy": _deploy,
    "env.create": _env_create,
    "env.destroy": _env_destroy,
    "promote": _promote,
    "approve": _approve,
    "reap": _reap,
    "drift.fix": _drift_fix,
    "adopt": _adopt,
    "env.repair": _env_repair,
    "upgrade": _upgrade,
    "remove": _remove,
}
