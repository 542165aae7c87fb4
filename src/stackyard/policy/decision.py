"""Decisions: which policies apply at a stage, evaluating them, and combining the layers.

Layers are organisation → environment type → environment. Every applicable policy is
evaluated on the same input and the results are a union: a lower layer can add ``deny``,
``warn`` and ``approval`` results but has no way to remove an upper layer's. A policy that
fails to evaluate fails closed (a ``deny`` naming it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.canonical import canonical_bytes, canonical_json, sha256_digest
from stackyard.diagnostics import Diagnostic, error, warning
from stackyard.model.platform import LAYERS, Policy
from stackyard.model.status import DecisionOutcome
from stackyard.policy.rego import Compiled, Module, RegoError
from stackyard.policy.sandbox import Limits, SandboxError

KINDS = ("deny", "warn", "approval")
SELF_APPROVAL_RULE = "allow_self_approval"


@dataclass(frozen=True, slots=True)
class Result:
    """One message of one rule of one policy."""

    kind: str  # deny | warn | approval
    policy: str
    layer: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {
            "kind": self.kind,
            "policy": self.policy,
            "layer": self.layer,
            "rule": self.rule,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating every applicable policy at one stage."""

    id: str
    at: float
    stage: str
    env: str | None
    actor: str
    input_hash: str
    revision: str
    results: tuple[Result, ...] = ()
    policies: tuple[str, ...] = ()
    allow_self_approval: bool = False
    subject: str = ""

    @property
    def outcome(self) -> DecisionOutcome:
        """``deny`` if anything denies, else ``approval`` if anything asks for one, else ``allow``."""
        kinds = {r.kind for r in self.results}
        if "deny" in kinds:
            return DecisionOutcome.DENY
        return DecisionOutcome.APPROVAL if "approval" in kinds else DecisionOutcome.ALLOW

    def of(self, kind: str) -> list[Result]:
        """The results of one kind."""
        return [r for r in self.results if r.kind == kind]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (what the decision log keeps)."""
        return {
            "id": self.id,
            "at": self.at,
            "stage": self.stage,
            "env": self.env,
            "actor": self.actor,
            "subject": self.subject,
            "input_hash": self.input_hash,
            "revision": self.revision,
            "outcome": self.outcome,
            "policies": list(self.policies),
            "allow_self_approval": self.allow_self_approval,
            "results": [r.to_json() for r in self.results],
        }


def canonical(document: Mapping[str, Any]) -> str:
    """The canonical JSON of an input document (what is hashed and what is evaluated)."""
    return canonical_json(document, ascii_only=True, default=str)


def input_hash(document: Mapping[str, Any] | str) -> str:
    """The digest of a (masked) input document, as the decision log records it."""
    raw = document if isinstance(document, str) else canonical(document)
    return sha256_digest(raw.encode())


@dataclass
class PolicySet:
    """The applied policies, compiled per selection (stage, environment, type) on first use."""

    policies: Sequence[Policy]
    limits: Limits | None = None  # time and memory of one evaluation (default: Limits())
    _compiled: dict[tuple[str, ...], Compiled] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def revision(self) -> str:
        """A digest of every policy's definition and sources: what a decision was made under."""
        body = [
            [p.name, p.layer, p.target, list(p.stages), sorted(p.sources.items())]
            for p in sorted(self.policies, key=lambda p: p.name)
        ]
        raw = canonical_bytes(body, ascii_only=True, spaced=True)
        return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]

    def applicable(self, stage: str, env: str | None, env_type: str | None) -> list[Policy]:
        """Policies taking part at ``stage``, upper layers first."""
        chosen = [p for p in self.policies if p.applies(stage, env, env_type)]
        return sorted(chosen, key=lambda p: (LAYERS.index(p.layer), p.name))

    def prepare(self, stage: str, env: str | None, env_type: str | None) -> None:
        """Compile the policies of ``stage`` and load them into the sandbox's worker, ahead of
        ``evaluate`` (which then pays neither). What fails here is left to ``evaluate``,
        which reports it."""
        chosen = self.applicable(stage, env, env_type)
        if chosen:
            with contextlib.suppress(RegoError, SandboxError, RuntimeError, OSError):
                self._compile(chosen).load()

    def evaluate(
        self,
        stage: str,
        document: Mapping[str, Any],
        *,
        env: str | None,
        env_type: str | None,
        actor: str,
        subject: str = "",
    ) -> Decision:
        """Evaluate the applicable policies on ``document`` (already masked)."""
        chosen = self.applicable(stage, env, env_type)
        results: list[Result] = []
        self_approval = False
        text = canonical(document)
        if chosen:
            try:
                values = self._compile(chosen).evaluate(text)
            except RegoError as exc:
                values = {}
                message = f"{exc.message} (at the '{stage}' stage)"
                results.append(Result("deny", "(evaluation)", "organisation", "error", message))
            layer_of = {p.name: p.layer for p in chosen}
            for p in chosen:
                rules = values.get(p.name, {})
                for kind in KINDS:
                    for item in _items(rules.get(kind)):
                        rule, message = _message(item, kind)
                        results.append(Result(kind, p.name, layer_of[p.name], rule, message))
                self_approval = self_approval or rules.get(SELF_APPROVAL_RULE) is True
        return Decision(
            id=uuid.uuid4().hex[:16],
            at=time.time(),
            stage=stage,
            env=env,
            actor=actor,
            input_hash=input_hash(text),
            revision=self.revision,
            results=tuple(results),
            policies=tuple(p.name for p in chosen),
            allow_self_approval=self_approval,
            subject=subject,
        )

    def _compile(self, chosen: Sequence[Policy]) -> Compiled:
        key = tuple(p.name for p in chosen)
        with self._lock:
            hit = self._compiled.get(key)
            if hit is None:
                hit = Compiled(
                    {p.name: [Module(n, t) for n, t in sorted(p.sources.items())] for p in chosen},
                    limits=self.limits,
                )
                self._compiled[key] = hit
        return hit


def _items(value: Any) -> list[Any]:
    if value is None or value is False:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return [value]


def _message(item: Any, kind: str) -> tuple[str, str]:
    """A result may be a string, or an object ``{msg, rule?}`` naming the rule that made it."""
    if isinstance(item, dict):
        text = item.get("msg") or item.get("message") or json.dumps(item, sort_keys=True)
        return str(item.get("rule") or kind), str(text)
    return kind, str(item)


def diagnostics(decision: Decision, kind: str) -> list[Diagnostic]:
    """The results of one kind as diagnostics (errors for deny, warnings otherwise)."""
    make = error if kind == "deny" else warning
    titles = {"deny": "Denied by policy", "warn": "Policy warning", "approval": "Approval required"}
    return [
        make(
            titles[kind],
            f"{r.message} (policy '{r.policy}', {r.layer} layer, rule {r.rule})",
            subject=r.policy,
        )
        for r in decision.of(kind)
    ]


def raise_if_denied(decision: Decision, what: str) -> None:
    """``PolicyDeniedError`` naming every deny, when the decision denies."""
    from stackyard.errors import PolicyDeniedError

    if decision.outcome is DecisionOutcome.DENY:
        raise PolicyDeniedError(
            f"{what} denied by policy",
            diagnostics(decision, "deny"),
            decision_id=decision.id,
            hint=f"'stackyard decisions --id {decision.id}' shows the decision.",
        )
