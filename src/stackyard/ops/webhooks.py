"""Webhooks: platform events POSTed, signed, to the URLs of the ``Webhook`` documents.

Two ticker steps do the work in the workers (``stackyard webhooks deliver`` runs them once
from the CLI):

- ``webhooks.dispatch`` reads the events after the cursor (``ops_marks`` key
  ``webhooks:cursor``) and adds one ``webhook_deliveries`` row per event and matching
  webhook; the unique ``(webhook, event_seq)`` makes it idempotent, whatever the number of
  workers or a cursor that moved back.
- ``webhooks.deliver`` sends the due rows: each is first claimed with one conditional
  update on its ``status`` and ``next_at`` (one worker wins it), then POSTed as JSON with
  ``X-Stackyard-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. A 2xx
  delivers it; anything else is retried with exponential backoff (``retry_base_s()``,
  doubling, at most ``CAP_S``) until ``MAX_ATTEMPTS``, then ``failed``. Redirects are not
  followed. The secret is read from the server's environment variable the document names
  (``secret_env``) at send time and never written anywhere; without it nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard import __version__
from stackyard.errors import InvalidInputError
from stackyard.model.platform import Webhook, parse_document
from stackyard.model.status import DeliveryStatus
from stackyard.ops import events, ticker
from stackyard.state.tables import ops_marks, upsert, webhook_deliveries

if TYPE_CHECKING:
    import httpx

    from stackyard.environments.workspace import Workspace
    from stackyard.state.sql import SqlStateStore

__all__ = [
    "CURSOR",
    "MAX_ATTEMPTS",
    "Delivery",
    "deliver",
    "deliveries",
    "dispatch",
    "listing",
    "redeliver",
    "retry_base_s",
    "sign",
    "webhooks",
]

log = logging.getLogger("stackyard.ops")

#: The ``ops_marks`` key holding the newest event seq already dispatched.
CURSOR = "webhooks:cursor"
#: Attempts before a delivery is ``failed`` (redeliver starts it again).
MAX_ATTEMPTS = 8
#: The longest wait between two attempts (seconds).
CAP_S = 3600.0
#: How long a claimed delivery is held by its sender before another may take it over.
LEASE_S = 60.0
#: What is kept of a response's body.
BODY_KEEP = 2048
#: Rows dispatched or sent per run of a step.
BATCH = 200
#: How far back (seconds) every dispatch reads the events again (out-of-order commits).
LATE_S = 30.0
RETRY_BASE_ENV = "STACKYARD_WEBHOOK_RETRY_BASE_S"
STATUSES = tuple(s.value for s in DeliveryStatus)


def retry_base_s() -> float:
    """The first retry's delay (``STACKYARD_WEBHOOK_RETRY_BASE_S``, default 10 s)."""
    raw = os.environ.get(RETRY_BASE_ENV, "").strip()
    try:
        value = float(raw) if raw else 10.0
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using 10", RETRY_BASE_ENV, raw[:40])
        value = 10.0
    return max(0.0, value)


def backoff_s(attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: base, 2×base, 4×base... ≤ ``CAP_S``."""
    return float(min(CAP_S, retry_base_s() * 2.0 ** max(0, attempts - 1)))


def sign(secret: str, timestamp: int, body: str) -> str:
    """The ``X-Stackyard-Signature`` header of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def webhooks(store: SqlStateStore) -> dict[str, Webhook]:
    """The applied ``Webhook`` documents, read now (the ticker's workspace lives long)."""
    from stackyard.state.records import Records

    out: dict[str, Webhook] = {}
    for doc in Records(store).documents("Webhook"):
        parsed, _problems = parse_document(
            {
                "apiVersion": "stackyard.dev/v1",
                "kind": "Webhook",
                "metadata": {"name": doc.name},
                "spec": doc.spec,
            },
            file="<state>",
        )
        if parsed is not None and isinstance(parsed.value, Webhook):
            out[doc.name] = parsed.value
    return out


def payload(event: events.Event) -> str:
    """The JSON body delivered for ``event`` (compact, keys sorted)."""
    doc = {
        "id": f"evt_{event.seq}",
        "type": event.type,
        "at": event.at,
        "env": event.env,
        "env_type": event.env_type,
        "team": event.team,
        "subject": event.subject,
        "data": dict(event.data),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


# -- dispatch --------------------------------------------------------------------------------


def _cursor(store: SqlStateStore) -> int:
    with store.reading() as conn:
        row = conn.execute(sa.select(ops_marks.c.value).where(ops_marks.c.key == CURSOR)).first()
    if row is None or not isinstance(row[0], Mapping):
        return 0
    return int(row[0].get("seq") or 0)


def _first_recent(store: SqlStateStore, since: float) -> int:
    """The smallest ``seq`` of the events published at ``since`` or later (a large number
    when there is none)."""
    from stackyard.state.tables import platform_events

    with store.reading() as conn:
        found = conn.execute(
            sa.select(sa.func.min(platform_events.c.seq)).where(platform_events.c.at >= since)
        ).scalar()
    return int(found) if found is not None else 2**62


def _move_cursor(store: SqlStateStore, seq: int) -> None:
    with store.writing() as conn:
        row = {"key": CURSOR, "at": time.time(), "value": {"seq": seq}}
        conn.execute(
            upsert(conn, ops_marks)
            .values(**row)
            .on_conflict_do_update(
                index_elements=["key"], set_={"at": row["at"], "value": row["value"]}
            )
        )


def dispatch(ws: Workspace) -> int:
    """Turn the events after the cursor into deliveries; how many rows were added.

    The events of the last ``LATE_S`` seconds are read again even when the cursor has passed
    them: on PostgreSQL two writers' events can commit out of ``seq`` order (the later seq
    first), and the earlier one would otherwise never be seen. The unique ``(webhook,
    event_seq)`` makes the second reading add nothing twice."""
    store = ws.store
    hooks = webhooks(store)
    added = 0
    cursor = _cursor(store)
    after = min(cursor, _first_recent(store, time.time() - LATE_S) - 1)
    while True:
        batch = events.read(store, after=after, limit=BATCH)
        if not batch:
            return added
        rows = []
        now = time.time()
        for event in batch:
            for name, hook in sorted(hooks.items()):
                if not hook.wants(
                    event.type, env=event.env, env_type=event.env_type, team=event.team
                ):
                    continue
                rows.append(
                    {
                        "id": f"wd_{secrets.token_hex(8)}",
                        "webhook": name,
                        "event_seq": event.seq,
                        "event_type": event.type,
                        "url": hook.url,
                        "body": payload(event),
                        "status": DeliveryStatus.PENDING,
                        "attempts": 0,
                        "next_at": now,
                        "created_at": now,
                    }
                )
        if rows:
            with store.writing() as conn:
                for row in rows:
                    inserted = conn.execute(
                        upsert(conn, webhook_deliveries)
                        .values(**row)
                        .on_conflict_do_nothing(index_elements=["webhook", "event_seq"])
                        .returning(webhook_deliveries.c.id)  # rowcount is -1 on psycopg
                    ).first()
                    added += inserted is not None
        after = batch[-1].seq
        if after > cursor:  # the cursor never moves back
            cursor = after
            _move_cursor(store, cursor)
        if len(batch) < BATCH:
            return added


# -- deliver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One row of ``webhook_deliveries``."""

    id: str
    webhook: str
    event_seq: int
    event_type: str
    url: str
    body: str
    status: str
    attempts: int
    next_at: float | None
    created_at: float
    last_at: float | None
    response_code: int | None
    response_body: str | None
    error: str | None

    @classmethod
    def of(cls, row: Any) -> Delivery:
        """From a row."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def to_json(self, *, body: bool = True) -> dict[str, Any]:
        """A JSON-ready form (``body``: with the JSON sent)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not body:
            out.pop("body")
        return out


def _claim(store: SqlStateStore, row: Any, now: float) -> bool:
    """Take ``row`` for sending: one conditional update on the status and ``next_at`` seen,
    so that of several workers exactly one wins it."""
    with store.writing() as conn:
        won = conn.execute(
            sa.update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == row["id"],
                webhook_deliveries.c.status == row["status"],
                webhook_deliveries.c.next_at == row["next_at"],
            )
            .values(status=DeliveryStatus.DELIVERING, next_at=now + LEASE_S)
        ).rowcount
    return bool(won)


def _finish(store: SqlStateStore, delivery_id: str, **values: Any) -> None:
    with store.writing() as conn:
        conn.execute(
            sa.update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.status == DeliveryStatus.DELIVERING,
            )
            .values(**values)
        )


def deliver(ws: Workspace, *, now: float | None = None, limit: int = BATCH) -> list[str]:
    """Send the due deliveries (pending ones whose ``next_at`` came, and claims whose lease
    ran out); the ids of those this call sent or failed."""
    import httpx

    store = ws.store
    now = time.time() if now is None else now
    with store.reading() as conn:
        due = (
            conn.execute(
                sa.select(webhook_deliveries)
                .where(
                    webhook_deliveries.c.status.in_(
                        [DeliveryStatus.PENDING, DeliveryStatus.DELIVERING]
                    ),
                    webhook_deliveries.c.next_at <= now,
                )
                .order_by(webhook_deliveries.c.next_at)
                .limit(limit)
            )
            .mappings()
            .all()
        )
    if not due:
        return []
    hooks = webhooks(store)
    done: list[str] = []
    timeout = httpx.Timeout(10.0, connect=5.0)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for row in due:
            if not _claim(store, row, time.time()):
                continue  # another worker took it
            _send(store, client, Delivery.of({**row}), hooks.get(row["webhook"]))
            done.append(str(row["id"]))
    return done


def _send(store: SqlStateStore, client: httpx.Client, d: Delivery, hook: Webhook | None) -> None:
    import httpx

    attempts = d.attempts + 1
    started = time.time()
    if hook is None:
        _finish(
            store,
            d.id,
            status=DeliveryStatus.FAILED,
            attempts=attempts,
            last_at=started,
            next_at=None,
            error=f"the Webhook document '{d.webhook}' is no longer applied; nothing was sent",
        )
        return
    secret = os.environ.get(hook.secret_env, "")
    if not secret:
        _finish(
            store,
            d.id,
            status=DeliveryStatus.FAILED,
            attempts=attempts,
            last_at=started,
            next_at=None,
            error=(
                f"the server's environment variable {hook.secret_env} (secret_env) is not set, "
                "so the delivery cannot be signed; nothing was sent. Set it where the workers "
                "run, then 'stackyard webhooks redeliver'."
            ),
        )
        return
    stamp = int(started)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"stackyard/{__version__}",
        "X-Stackyard-Event": d.event_type,
        "X-Stackyard-Delivery": d.id,
        "X-Stackyard-Signature": sign(secret, stamp, d.body),
    }
    code: int | None = None
    text: str | None = None
    error: str | None = None
    try:
        with client.stream("POST", hook.url, content=d.body.encode(), headers=headers) as resp:
            code = resp.status_code
            kept = b""
            for chunk in resp.iter_bytes():
                kept += chunk
                if len(kept) >= BODY_KEEP:
                    break
            text = kept[:BODY_KEEP].decode("utf-8", errors="replace")
            if resp.is_redirect:
                where = resp.headers.get("location", "")[:300]
                error = f"HTTP {code}: a redirect (to {where or 'nowhere'}) is not followed"
            elif not resp.is_success:
                error = f"HTTP {code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {_first_line(exc)}"
    except Exception as exc:  # never let one delivery stop the others
        error = f"{type(exc).__name__}: {_first_line(exc)}"
    error = error.replace(secret, "***") if error else None
    if text:
        text = text.replace(secret, "***")
    common = {"attempts": attempts, "last_at": time.time(), "url": hook.url}
    if error is None:
        _finish(
            store,
            d.id,
            status=DeliveryStatus.DELIVERED,
            next_at=None,
            response_code=code,
            response_body=text,
            error=None,
            **common,
        )
        return
    final = attempts >= MAX_ATTEMPTS
    _finish(
        store,
        d.id,
        status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
        next_at=None if final else time.time() + backoff_s(attempts),
        response_code=code,
        response_body=text,
        error=error,
        **common,
    )
    log.info(
        "webhook %s: delivery %s of %s, attempt %d: %s%s",
        d.webhook,
        d.id,
        d.event_type,
        attempts,
        error,
        " (failed for good)" if final else "",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no detail"


# -- what the CLI shows -----------------------------------------------------------------------


def _authorize(ws: Workspace, *, audit: bool = False) -> None:
    from stackyard.policy.rbac import Action

    ws.access.authorize(Action.PLATFORM_APPLY, audit=audit)


def deliveries(
    ws: Workspace,
    *,
    webhook: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Deliveries, newest first (platform engineers and admins)."""
    _authorize(ws)
    if status is not None and status not in STATUSES:
        raise InvalidInputError(
            f"Unknown delivery status '{status}'", hint=f"Use one of: {', '.join(STATUSES)}."
        )
    if limit < 1:
        raise InvalidInputError("--limit must be at least 1", hint="Pass --limit 50, say.")
    query = sa.select(webhook_deliveries)
    if webhook is not None:
        query = query.where(webhook_deliveries.c.webhook == webhook)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    query = query.order_by(
        webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.event_seq.desc()
    ).limit(min(limit, 1000))
    with ws.store.reading() as conn:
        return [Delivery.of(r) for r in conn.execute(query).mappings().all()]


def listing(ws: Workspace) -> list[dict[str, Any]]:
    """The applied webhooks with their last delivery (platform engineers and admins). The
    secret is never shown: only the variable's name and whether this process has it."""
    _authorize(ws)
    out = []
    for name, hook in sorted(webhooks(ws.store).items()):
        with ws.store.reading() as conn:
            last = (
                conn.execute(
                    sa.select(webhook_deliveries)
                    .where(webhook_deliveries.c.webhook == name)
                    .order_by(
                        webhook_deliveries.c.created_at.desc(),
                        webhook_deliveries.c.event_seq.desc(),
                    )
                    .limit(1)
                )
                .mappings()
                .first()
            )
            counts: dict[str, int] = {
                str(status): int(n)
                for status, n in conn.execute(
                    sa.select(webhook_deliveries.c.status, sa.func.count())
                    .where(webhook_deliveries.c.webhook == name)
                    .group_by(webhook_deliveries.c.status)
                ).all()
            }
        out.append(
            {
                "name": name,
                "url": hook.url,
                "events": list(hook.events),
                "filters": {
                    "env_types": list(hook.env_types),
                    "teams": list(hook.teams),
                    "envs": list(hook.envs),
                },
                "secret_env": hook.secret_env,
                "secret_set": bool(os.environ.get(hook.secret_env)),
                "expiring_before_s": hook.expiring_before_s,
                "deliveries": {s: int(counts.get(s, 0)) for s in STATUSES},
                "last_delivery": None if last is None else Delivery.of(last).to_json(body=False),
            }
        )
    return out


def redeliver(ws: Workspace, delivery_id: str) -> Delivery:
    """Send a delivery again (whatever its status): it is pending now, with a fresh budget of
    attempts. Platform engineers and admins; audited."""
    _authorize(ws, audit=True)
    with ws.store.writing() as conn:
        found = conn.execute(
            sa.update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(status=DeliveryStatus.PENDING, attempts=0, next_at=time.time(), error=None)
        ).rowcount
    if not found:
        raise InvalidInputError(
            f"No webhook delivery '{delivery_id}'",
            hint="'stackyard webhooks deliveries' lists them with their ids.",
        )
    from stackyard.model.status import AuditResult

    ws.access.audit("webhooks.redeliver", f"webhook-delivery:{delivery_id}", AuditResult.OK, {})
    with ws.store.reading() as conn:
        row = (
            conn.execute(
                sa.select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
            )
            .mappings()
            .one()
        )
    return Delivery.of(row)


def run_now(ws: Workspace) -> dict[str, Any]:
    """Dispatch and deliver once, now (the CLI without a worker); platform engineers and
    admins. What was added and sent, and the deliveries sent."""
    _authorize(ws)
    added = dispatch(ws)
    sent = deliver(ws)
    found: Sequence[Delivery] = []
    if sent:
        with ws.store.reading() as conn:
            found = [
                Delivery.of(r)
                for r in conn.execute(
                    sa.select(webhook_deliveries).where(webhook_deliveries.c.id.in_(sent))
                )
                .mappings()
                .all()
            ]
    return {
        "dispatched": added,
        "sent": len(sent),
        "deliveries": [d.to_json(body=False) for d in found],
    }


ticker.register("webhooks.dispatch", 1.0, dispatch)
ticker.register("webhooks.deliver", 1.0, deliver)
