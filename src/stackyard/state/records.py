"""Platform and delivery records beside the state: documents, environments, releases,
deployments with their events, workloads and component instances (SQLAlchemy Core)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from stackyard import canonical
from stackyard.errors import VerificationFailedError
from stackyard.model.environment import (
    Deployment,
    DeploymentEvent,
    Environment,
    InstanceRecord,
    WorkloadRecord,
)
from stackyard.model.platform import Binding
from stackyard.model.status import DEPLOYMENT, ENVIRONMENT, DeploymentStatus, EnvironmentStatus
from stackyard.state.api import Lease
from stackyard.state.locks import check_fence
from stackyard.state.sql import SqlStateStore
from stackyard.state.tables import (
    deployment_events,
    deployments,
    environments,
    instances,
    platform_documents,
    releases,
    upsert,
    workloads,
)

__all__ = ["Records", "StoredDocument", "release_digest"]

#: What the reaper may claim (an older claim on a ``destroying`` one is taken over too).
_CLAIMABLE = [EnvironmentStatus.READY, EnvironmentStatus.FAILED]
_NOT_LIVE = [s for s in EnvironmentStatus if not s.is_live]


def release_digest(document: Mapping[str, Any]) -> str:
    """The content address of a release document (its id): SHA-256 of its canonical JSON."""
    return canonical.digest(document)


def _verified(release_id: str, document: Mapping[str, Any]) -> str:
    """``release_id`` when ``document`` still hashes to it, else ``VerificationFailedError``
    (tampering)."""
    if release_digest(document) != release_id:
        raise VerificationFailedError(
            f"Release {release_id} was modified in the state database: its content no longer "
            "matches its digest (tamper detected)",
            hint="Do not use this release. Restore the releases table from a backup, or create "
            "a new release from the Score files with 'stackyard release create'.",
        )
    return release_id


class StoredDocument(NamedTuple):
    """An applied platform document."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    digest: str


def _binding(data: Mapping[str, Any]) -> Binding:
    name, _, rng = str(data["component"]).partition("@")
    return Binding(
        str(data["type"]),
        name,
        rng or "*",
        data.get("class"),
        data.get("id"),
        dict(data.get("params") or {}),
    )


class Records:
    """Reads and writes of the records; every method is one transaction."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store

    # -- platform documents ---------------------------------------------------------------

    def documents(self, kind: str | None = None) -> list[StoredDocument]:
        """Applied documents (of one kind), by kind and name."""
        q = sa.select(platform_documents).order_by(
            platform_documents.c.kind, platform_documents.c.name
        )
        if kind:
            q = q.where(platform_documents.c.kind == kind)
        with self.store.reading() as conn:
            return [StoredDocument(r.kind, r.name, r.spec, r.digest) for r in conn.execute(q)]

    def write_documents(
        self,
        upserts: Iterable[tuple[str, str, Mapping[str, Any], str, str]],
        deletes: Iterable[tuple[str, str]],
        *,
        actor: str,
        environments_from: Sequence[Environment] = (),
    ) -> None:
        """Apply a platform change in one transaction: documents and declared environments."""
        now = time.time()
        with self.store.writing() as conn:
            for kind, name in deletes:
                conn.execute(
                    sa.delete(platform_documents).where(
                        platform_documents.c.kind == kind, platform_documents.c.name == name
                    )
                )
            for kind, name, spec, digest, file in upserts:
                row = {
                    "kind": kind,
                    "name": name,
                    "spec": dict(spec),
                    "digest": digest,
                    "file": file,
                    "applied_at": now,
                    "applied_by": actor,
                }
                ins = upsert(conn, platform_documents).values(**row)
                conn.execute(ins.on_conflict_do_update(index_elements=["kind", "name"], set_=row))
            for env in environments_from:
                self._put_env(conn, env, now)

    # -- environments ---------------------------------------------------------------------

    def environment(self, name: str) -> Environment | None:
        """One environment, or None."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
        return None if row is None else _env(row)

    def environments(self, *, include_destroyed: bool = False) -> list[Environment]:
        """Every environment, by name."""
        q = sa.select(environments).order_by(environments.c.name)
        if not include_destroyed:
            q = q.where(environments.c.status != EnvironmentStatus.DESTROYED)
        with self.store.reading() as conn:
            return [_env(r) for r in conn.execute(q)]

    def put_environment(self, env: Environment) -> None:
        """Insert or replace an environment row (a new row may start in any status: this
        seeds or restores a record; a replaced row's status must be allowed to move)."""
        with self.store.writing() as conn:
            self._put_env(conn, env, time.time(), seeding=True)

    def insert_environment(self, env: Environment) -> bool:
        """Insert a new environment; False when the name is taken by a live or declared one.

        A destroyed environment's row is replaced (names are reusable after destroy).
        """
        with self.store.writing() as conn:
            row = conn.execute(
                sa.select(environments.c.status, environments.c.declared).where(
                    environments.c.name == env.name
                )
            ).first()
            if row is not None and ENVIRONMENT.parse(row.status, subject=env.name).is_live:
                return False
            self._put_env(conn, env, time.time())
            return True

    def set_status(
        self,
        name: str,
        status: EnvironmentStatus,
        *,
        expect: Sequence[EnvironmentStatus] | None = None,
        **extra: Any,
    ) -> bool:
        """Move an environment to ``status`` (only from ``expect`` when given); True if moved.

        A move that ``status.ENVIRONMENT`` does not allow raises ``InvalidTransitionError``
        and writes nothing; a status outside ``expect`` is no error (False: not moved).
        """
        new = ENVIRONMENT.parse(status, subject=name)
        allowed = None if expect is None else {ENVIRONMENT.parse(e) for e in expect}
        with self.store.writing() as conn:
            row = conn.execute(
                sa.select(environments.c.status).where(environments.c.name == name)
            ).first()
            if row is None:
                return False
            old = ENVIRONMENT.parse(row.status, subject=name)
            if allowed is not None and old not in allowed:
                return False
            ENVIRONMENT.check(old, new, subject=f"environment '{name}'")
            res = conn.execute(
                sa.update(environments)
                .where(environments.c.name == name, environments.c.status == old)
                .values(status=new, updated_at=time.time(), **extra)
            )
            return bool(res.rowcount)

    def claim_expired(self, now: float, *, stale_after: float) -> list[str]:
        """Atomically claim expired environments for destruction (status ``destroying``).

        A claim older than ``stale_after`` seconds (a reaper that died) may be taken over.
        Each returned name was claimed by this call alone.
        """
        destroying = EnvironmentStatus.DESTROYING
        for claimable in (*_CLAIMABLE, destroying):
            ENVIRONMENT.check(claimable, destroying)
        claimed = []
        with self.store.reading() as conn:
            names = [
                r.name
                for r in conn.execute(
                    sa.select(environments.c.name).where(
                        environments.c.expires_at.is_not(None),
                        environments.c.expires_at <= now,
                        environments.c.status.in_([*_CLAIMABLE, destroying]),
                    )
                )
            ]
        for name in names:
            with self.store.writing() as conn:
                res = conn.execute(
                    sa.update(environments)
                    .where(
                        environments.c.name == name,
                        sa.or_(
                            environments.c.status.in_(_CLAIMABLE),
                            sa.and_(
                                environments.c.status == destroying,
                                sa.or_(
                                    environments.c.claimed_at.is_(None),
                                    environments.c.claimed_at < now - stale_after,
                                ),
                            ),
                        ),
                    )
                    .values(status=destroying, claimed_at=now, updated_at=now)
                )
                if res.rowcount:
                    claimed.append(name)
        return claimed

    def children(self, name: str) -> list[str]:
        """Live environments whose parent is ``name``."""
        with self.store.reading() as conn:
            return [
                r.name
                for r in conn.execute(
                    sa.select(environments.c.name).where(
                        environments.c.parent == name,
                        environments.c.status.not_in(_NOT_LIVE),
                    )
                )
            ]

    def _put_env(
        self, conn: sa.Connection, env: Environment, now: float, *, seeding: bool = False
    ) -> None:
        """Upsert ``env``'s row; its status change (or, unless ``seeding``, its first status)
        must be allowed by ``status.ENVIRONMENT``."""
        new = ENVIRONMENT.parse(env.status, subject=env.name)
        # FOR UPDATE: on PostgreSQL (READ COMMITTED) a second writer waits here, so the move is
        # checked against the status it replaces (SQLite writers are serialised already)
        was = conn.execute(
            sa.select(environments.c.status)
            .where(environments.c.name == env.name)
            .with_for_update()
        ).scalar_one_or_none()
        if was is not None or not seeding:
            old = None if was is None else ENVIRONMENT.parse(was, subject=env.name)
            ENVIRONMENT.check(old, new, subject=f"environment '{env.name}'")
        row = {
            "name": env.name,
            "type": env.type,
            "parent": env.parent,
            "owner": env.owner,
            "status": new,
            "declared": env.declared,
            "created_at": env.created_at,
            "created_by": env.created_by,
            "expires_at": env.expires_at,
            "claimed_at": env.claimed_at,
            "variables": dict(env.variables),
            "labels": dict(env.labels),
            "bindings": [b.to_json() for b in env.bindings],
            "updated_at": now,
        }
        ins = upsert(conn, environments).values(**row)
        conn.execute(ins.on_conflict_do_update(index_elements=["name"], set_=row))

    # -- releases -------------------------------------------------------------------------

    def put_release(self, release_id: str, document: Mapping[str, Any], *, actor: str) -> bool:
        """Store a release (immutable: a second put of the same id is a no-op); True if new."""
        with self.store.writing() as conn:
            ins = upsert(conn, releases).values(
                id=release_id, created_at=time.time(), created_by=actor, document=dict(document)
            )
            res = conn.execute(ins.on_conflict_do_nothing(index_elements=["id"]))
            return bool(res.rowcount)

    def release(self, release_id: str) -> tuple[str, float, str, Mapping[str, Any]] | None:
        """``(id, created_at, created_by, document)``; ``release_id`` may be a unique prefix.

        The document is checked against its digest on every read: a release edited in the
        database is refused (``StateError`` naming it), never used under its old id.
        """
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(releases)
                .where(releases.c.id.startswith(release_id, autoescape=True))
                .limit(2)
            ).all()
        if len(rows) != 1:
            return None
        r = rows[0]
        return _verified(r.id, r.document), r.created_at, r.created_by, r.document

    def releases(self) -> list[tuple[str, float, str, Mapping[str, Any]]]:
        """Every release, newest first (each checked against its digest, as ``release``)."""
        with self.store.reading() as conn:
            return [
                (_verified(r.id, r.document), r.created_at, r.created_by, r.document)
                for r in conn.execute(sa.select(releases).order_by(releases.c.created_at.desc()))
            ]

    # -- deployments ----------------------------------------------------------------------

    def put_deployment(self, dep: Deployment) -> None:
        """Insert or update a deployment row; its status (first, or changed) must be allowed
        by ``status.DEPLOYMENT`` (``InvalidTransitionError`` otherwise, nothing written)."""
        new = DEPLOYMENT.parse(dep.status, subject=f"deployment {dep.id}")
        row = {
            "id": dep.id,
            "env": dep.env,
            "release_id": dep.release_id,
            "kind": dep.kind,
            "status": new,
            "actor": dep.actor,
            "created_at": dep.created_at,
            "finished_at": dep.finished_at,
            "workloads": list(dep.workloads),
            "summary": json.loads(json.dumps(dict(dep.summary), default=str)),
            "plan": None if dep.plan is None else json.loads(json.dumps(dep.plan, default=str)),
            "error": dep.error,
            "request": None
            if dep.request is None
            else json.loads(json.dumps(dep.request, default=str)),
            "decision_id": dep.decision_id,
        }
        with self.store.writing() as conn:
            was = conn.execute(  # FOR UPDATE: see ``_put_env``
                sa.select(deployments.c.status).where(deployments.c.id == dep.id).with_for_update()
            ).scalar_one_or_none()
            old = None if was is None else DEPLOYMENT.parse(was, subject=f"deployment {dep.id}")
            DEPLOYMENT.check(old, new, subject=f"deployment {dep.id}")
            ins = upsert(conn, deployments).values(**row)
            conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=row))

    def interrupt_running(self, env: str, *, keep: str | None = None) -> list[str]:
        """Mark ``env``'s deployments still ``running`` as ``interrupted``; returns their ids.

        Call only while holding the environment's lock: every deployment runs under it, so a
        ``running`` one seen by the lock's holder belongs to a writer that is gone (killed by a
        signal, or its lease ran out).
        """
        running = DeploymentStatus.RUNNING
        interrupted = DEPLOYMENT.check(running, DeploymentStatus.INTERRUPTED)
        query = sa.select(deployments.c.id).where(
            deployments.c.env == env, deployments.c.status == running
        )
        if keep:
            query = query.where(deployments.c.id != keep)
        with self.store.writing() as conn:
            ids = list(conn.execute(query).scalars())
            if ids:
                conn.execute(
                    sa.update(deployments)
                    .where(deployments.c.id.in_(ids), deployments.c.status == running)
                    .values(
                        status=interrupted,
                        finished_at=time.time(),
                        error="interrupted: the writer stopped before finishing",
                    )
                )
        return ids

    def move_deployment(
        self, deployment_id: str, *, expect: DeploymentStatus, status: DeploymentStatus
    ) -> bool:
        """Atomically move a deployment from ``expect`` to ``status``; False if it was not there.

        A move that ``status.DEPLOYMENT`` does not allow raises ``InvalidTransitionError``.
        """
        subject = f"deployment {deployment_id}"
        old = DEPLOYMENT.parse(expect, subject=subject)
        new = DEPLOYMENT.check(old, DEPLOYMENT.parse(status, subject=subject), subject=subject)
        with self.store.writing() as conn:
            res = conn.execute(
                sa.update(deployments)
                .where(deployments.c.id == deployment_id, deployments.c.status == old)
                .values(status=new)
            )
            return bool(res.rowcount)

    def add_events(self, deployment_id: str, events: Sequence[DeploymentEvent]) -> None:
        """Append events to a deployment."""
        if not events:
            return
        with self.store.writing() as conn:
            last = conn.execute(
                sa.select(sa.func.max(deployment_events.c.seq)).where(
                    deployment_events.c.deployment_id == deployment_id
                )
            ).scalar_one()
            base = 0 if last is None else int(last) + 1  # a resumed deployment appends
            conn.execute(
                sa.insert(deployment_events),
                [
                    {
                        "deployment_id": deployment_id,
                        "seq": base + e.seq,
                        "at": e.at,
                        "kind": e.kind,
                        "address": e.address,
                        "message": e.message,
                    }
                    for e in events
                ],
            )

    def deployment(self, deployment_id: str) -> Deployment | None:
        """One deployment (a unique id prefix is accepted)."""
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(deployments)
                .where(deployments.c.id.startswith(deployment_id, autoescape=True))
                .limit(2)
            ).all()
        return _deployment(rows[0]) if len(rows) == 1 else None

    def deployments(
        self, env: str | None = None, *, limit: int = 50, release_id: str | None = None
    ) -> list[Deployment]:
        """Deployments, newest first."""
        q = sa.select(deployments).order_by(deployments.c.created_at.desc()).limit(limit)
        if env:
            q = q.where(deployments.c.env == env)
        if release_id:
            q = q.where(deployments.c.release_id == release_id)
        with self.store.reading() as conn:
            return [_deployment(r) for r in conn.execute(q)]

    def events(self, deployment_id: str) -> list[DeploymentEvent]:
        """A deployment's events, in order."""
        with self.store.reading() as conn:
            return [
                DeploymentEvent(r.seq, r.at, r.kind, r.address, r.message)
                for r in conn.execute(
                    sa.select(deployment_events)
                    .where(deployment_events.c.deployment_id == deployment_id)
                    .order_by(deployment_events.c.seq)
                )
            ]

    # -- workloads and instances ----------------------------------------------------------

    def workloads(self, env: str) -> list[WorkloadRecord]:
        """Workloads live in ``env``, by name."""
        with self.store.reading() as conn:
            return [
                WorkloadRecord(
                    r.env,
                    r.name,
                    r.deployment_id,
                    r.spec,
                    tuple(r.uids),
                    r.release_id,
                    r.updated_at,
                )
                for r in conn.execute(
                    sa.select(workloads).where(workloads.c.env == env).order_by(workloads.c.name)
                )
            ]

    def workloads_of(self, envs: Sequence[str]) -> dict[str, list[WorkloadRecord]]:
        """``workloads`` of many environments in one query: env → its workloads by name."""
        out: dict[str, list[WorkloadRecord]] = {e: [] for e in envs}
        names = list(out)
        with self.store.reading() as conn:
            for i in range(0, len(names), _IN_CHUNK):
                query = (
                    sa.select(workloads)
                    .where(workloads.c.env.in_(names[i : i + _IN_CHUNK]))
                    .order_by(workloads.c.env, workloads.c.name)
                )
                for r in conn.execute(query):
                    out[r.env].append(
                        WorkloadRecord(
                            r.env,
                            r.name,
                            r.deployment_id,
                            r.spec,
                            tuple(r.uids),
                            r.release_id,
                            r.updated_at,
                        )
                    )
        return out

    def instances_of(self, envs: Sequence[str]) -> dict[str, dict[str, InstanceRecord]]:
        """``instances`` of many environments in one query, **without** their secret outputs
        (nothing is decrypted: ``outputs`` holds the plain ones, ``secret_keys`` is empty),
        for read models that need what an instance is, not what it holds."""
        out: dict[str, dict[str, InstanceRecord]] = {e: {} for e in envs}
        names = list(out)
        columns = [c for c in instances.c if c.name != "secret_blob"]
        with self.store.reading() as conn:
            for i in range(0, len(names), _IN_CHUNK):
                query = sa.select(*columns).where(instances.c.env.in_(names[i : i + _IN_CHUNK]))
                for r in conn.execute(query):
                    out[r.env][r.uid] = InstanceRecord(
                        r.env,
                        r.uid,
                        r.component,
                        r.digest,
                        r.core,
                        r.params,
                        r.requires,
                        dict(r.outputs),
                        (),
                        r.updated_at,
                        r.monthly_cost,
                        r.currency,
                    )
        return out

    def instances(self, env: str) -> dict[str, InstanceRecord]:
        """Instances of ``env`` by uid, secret outputs decrypted."""
        box = self.store.box
        out = {}
        with self.store.reading() as conn:
            for r in conn.execute(sa.select(instances).where(instances.c.env == env)):
                secret = box.decrypt_json(r.secret_blob) if r.secret_blob else {}
                out[r.uid] = InstanceRecord(
                    r.env,
                    r.uid,
                    r.component,
                    r.digest,
                    r.core,
                    r.params,
                    r.requires,
                    {**r.outputs, **secret},
                    tuple(sorted(secret)),
                    r.updated_at,
                    r.monthly_cost,
                    r.currency,
                )
        return out

    def record_deploy(
        self,
        env: str,
        *,
        put_workloads: Sequence[WorkloadRecord],
        drop_workloads: Sequence[str] = (),
        put_instances: Sequence[InstanceRecord],
        drop_instances: Sequence[str] = (),
        lease: Lease | None = None,
    ) -> None:
        """After an apply: the live workloads and instances of ``env``, in one transaction.

        With ``lease``, the write is fenced: it is refused (``LockLostError``) unless that
        lease is still the environment's live lease, so a writer that lost its lock never
        records a view of the workloads that another writer has since changed.
        """
        now = time.time()
        box = self.store.box
        with self.store.writing() as conn:
            if lease is not None:
                check_fence(conn, lease)
            for name in drop_workloads:
                conn.execute(
                    sa.delete(workloads).where(workloads.c.env == env, workloads.c.name == name)
                )
            for uid in drop_instances:
                conn.execute(
                    sa.delete(instances).where(instances.c.env == env, instances.c.uid == uid)
                )
            rows = [
                {
                    "env": env,
                    "name": w.name,
                    "deployment_id": w.deployment_id,
                    "release_id": w.release_id,
                    "spec": dict(w.spec),
                    "uids": list(w.uids),
                    "updated_at": now,
                }
                for w in put_workloads
            ]
            if rows:  # one statement for all (compiled once, cached), the rows as its batch
                conn.execute(_upsert_all(conn, workloads, ("env", "name")), rows)
            rows = []
            for i in put_instances:
                plain = {k: v for k, v in i.outputs.items() if k not in i.secret_keys}
                secret = {k: v for k, v in i.outputs.items() if k in i.secret_keys}
                rows.append(
                    {
                        "env": env,
                        "uid": i.uid,
                        "component": i.component,
                        "digest": i.digest,
                        "core": i.core,
                        "params": dict(i.params),
                        "requires": dict(i.requires),
                        "outputs": plain,
                        "secret_blob": box.encrypt_json(secret) if secret else None,
                        "updated_at": now,
                        "monthly_cost": i.monthly_cost,
                        "currency": i.currency,
                    }
                )
            if rows:
                conn.execute(_upsert_all(conn, instances, ("env", "uid")), rows)

    def forget_environment(self, env: str) -> None:
        """Drop an environment's workloads and instances (after its destroy)."""
        with self.store.writing() as conn:
            conn.execute(sa.delete(workloads).where(workloads.c.env == env))
            conn.execute(sa.delete(instances).where(instances.c.env == env))


#: Environments per ``IN (...)`` list of the many-environment reads.
_IN_CHUNK = 500


def _upsert_all(conn: sa.Connection, table: sa.Table, key: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column from ``excluded``:
    the same statement whatever the values (so SQLAlchemy compiles it once and caches it),
    executed with the rows as its parameters."""
    ins = upsert(conn, table)
    return ins.on_conflict_do_update(
        index_elements=list(key),
        set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in key},
    )


def _env(r: Any) -> Environment:
    return Environment(
        name=r.name,
        type=r.type,
        status=ENVIRONMENT.parse(r.status, subject=f"environment '{r.name}'"),
        parent=r.parent,
        owner=r.owner,
        declared=bool(r.declared),
        created_at=r.created_at,
        created_by=r.created_by,
        expires_at=r.expires_at,
        claimed_at=r.claimed_at,
        variables=dict(r.variables or {}),
        labels=dict(r.labels or {}),
        bindings=tuple(_binding(b) for b in (r.bindings or [])),
    )


def _deployment(r: Any) -> Deployment:
    return Deployment(
        id=r.id,
        env=r.env,
        kind=r.kind,
        status=DEPLOYMENT.parse(r.status, subject=f"deployment {r.id}"),
        actor=r.actor,
        created_at=r.created_at,
        release_id=r.release_id,
        finished_at=r.finished_at,
        workloads=tuple(r.workloads or ()),
        summary=dict(r.summary or {}),
        plan=r.plan,
        error=r.error,
        request=r.request,
        decision_id=r.decision_id,
    )
