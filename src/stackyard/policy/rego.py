"""Rego, evaluated in process: the one adapter over the interpreter (regorus; ADR 0003).

Policies are written in package ``stackyard`` (OPA syntax, ``rego.v1``). To evaluate many
policies in one pass and still know which produced each result, every policy's modules are
loaded under a package of their own (``package stackyard`` becomes
``package stackyard.policies.<policy>``); a module in any other package is a library,
loaded as written and shared.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regorus

from stackyard.errors import StackyardError
from stackyard.policy.sandbox import Limits, SandboxError, shared

ROOT_PACKAGE = "stackyard"
POLICIES_PACKAGE = "stackyard.policies"
_PACKAGE = re.compile(r"^(\s*package\s+)([A-Za-z_][\w.]*)(\s*(?:#.*)?)$", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]+)\b", re.MULTILINE)
MAX_MODULE_BYTES = 256 * 1024


class RegoError(StackyardError):
    """A Rego module does not compile, or an evaluation failed: the policy's author fixes it."""

    exit_code = 2


def package_of(source: str) -> str | None:
    """The module's package, or None when it declares none."""
    m = _PACKAGE.search(source)
    return m.group(2) if m else None


def slot(policy: str) -> str:
    """A policy name as a Rego package segment (``prod-approval`` → ``prod_approval``)."""
    return policy.replace("-", "_")


def isolate(source: str, policy: str) -> str:
    """``package stackyard`` → ``package stackyard.policies.<policy>``; other modules unchanged."""
    m = _PACKAGE.search(source)
    if m is None or m.group(2) != ROOT_PACKAGE:
        return source
    return source[: m.start(2)] + f"{POLICIES_PACKAGE}.{slot(policy)}" + source[m.end(2) :]


@dataclass(frozen=True, slots=True)
class Module:
    """One ``.rego`` source and the name it is known by (its file)."""

    name: str
    source: str


class Compiled:
    """Policies prepared for one interpreter: their modules isolated per policy and checked
    to compile. Evaluations run in the policy sandbox's worker process under ``limits``
    (time and memory), which keeps the loaded interpreter between evaluations."""

    def __init__(
        self, policies: Mapping[str, Sequence[Module]], *, limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self.slots = {slot(name): name for name in policies}
        self._modules: dict[str, str] = {}
        for name, modules in policies.items():
            for module in modules:
                is_root = package_of(module.source) == ROOT_PACKAGE
                key = f"{name}/{module.name}" if is_root else module.name
                self._modules.setdefault(
                    key, isolate(module.source, name) if is_root else module.source
                )
        self._engine()  # every module compiles, or RegoError names it now
        self._key = hashlib.sha256(json.dumps(sorted(self._modules.items())).encode()).hexdigest()

    def _engine(self) -> regorus.Engine:
        engine = regorus.Engine()
        for key, text in self._modules.items():
            try:
                engine.add_policy(key, text)
            except (RuntimeError, ValueError) as exc:
                name, _, file = key.partition("/")
                raise RegoError(
                    f"Policy '{name}': {file or key} does not compile: {_first_line(exc)}",
                    hint="Fix the module; 'stackyard policy test DIR' checks it locally.",
                ) from None
        return engine

    def evaluate(self, document: Mapping[str, Any] | str) -> dict[str, dict[str, Any]]:
        """``{policy: {rule: value}}`` for the input ``document`` (a mapping, or its JSON text);
        rules left undefined are absent."""
        text = document if isinstance(document, str) else json.dumps(document, default=str)
        try:
            raw = json.loads(
                shared(self.limits).evaluate(
                    self._key, self._modules, text, f"data.{POLICIES_PACKAGE}"
                )
            )
        except SandboxError as exc:
            raise RegoError(f"{self._named()}: {exc.message}", hint=exc.hint) from None
        except (RuntimeError, ValueError) as exc:
            raise RegoError(f"Policy evaluation failed: {_first_line(exc)}") from None
        results = raw.get("result") or []
        value = results[0]["expressions"][0]["value"] if results else {}
        return {self.slots.get(k, k): v for k, v in (value or {}).items() if isinstance(v, dict)}

    def load(self) -> None:
        """Load these policies into the sandbox's worker ahead of their first evaluation
        (``Sandbox.load``)."""
        shared(self.limits).load(self._key, self._modules)

    def _named(self) -> str:
        """The policies evaluated together, for a message about their evaluation."""
        names = sorted(self.slots.values())
        return ("Policy " if len(names) == 1 else "Policies ") + ", ".join(f"'{n}'" for n in names)


def check_module(module: Module) -> str | None:
    """Why ``module`` does not compile on its own, or None."""
    engine = regorus.Engine()
    try:
        engine.add_policy(module.name, module.source)
    except (RuntimeError, ValueError) as exc:
        return _first_line(exc)
    return None


@dataclass(frozen=True, slots=True)
class TestResult:
    """One ``test_*`` rule's outcome."""

    file: str
    name: str
    passed: bool
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"file": self.file, "test": self.name, "passed": self.passed, "error": self.error}


def run_tests(modules: Sequence[Module]) -> list[TestResult]:
    """Evaluate every ``test_*`` rule of ``modules`` (loaded together, packages as written).

    A test passes when its rule is true; false, undefined or an error fails it.
    """
    engine = regorus.Engine()
    for m in modules:
        try:
            engine.add_policy(m.name, m.source)
        except (RuntimeError, ValueError) as exc:
            return [TestResult(m.name, "(compile)", False, _first_line(exc))]
    out = []
    for m in modules:
        pkg = package_of(m.source)
        for name in sorted(set(_TEST_RULE.findall(m.source))):
            try:
                raw = json.loads(engine.eval_query_as_json(f"data.{pkg}.{name}"))
                results = raw.get("result") or []
                value = results[0]["expressions"][0]["value"] if results else None
                out.append(
                    TestResult(
                        m.name,
                        name,
                        value is True,
                        "" if value is True else f"evaluated to {json.dumps(value)}",
                    )
                )
            except (RuntimeError, ValueError) as exc:
                out.append(TestResult(m.name, name, False, _first_line(exc)))
    return out


def _first_line(exc: BaseException) -> str:
    """The interpreter's message on one line (its location line and the error after it)."""
    lines = [
        ln.strip() for ln in str(exc).splitlines() if ln.strip() and set(ln.strip()) - set("|^- ")
    ]
    return " ".join(lines[:3])[:300] if lines else type(exc).__name__
