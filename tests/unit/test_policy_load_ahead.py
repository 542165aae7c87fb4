"""Policies loaded into the sandbox's worker ahead of their first evaluation
(``Sandbox.load``, ``PolicySet.prepare``; ``Governor.warm`` calls them from a thread)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stackyard.policy.sandbox import Limits, Sandbox

DENY = """package stackyard.policies.x

deny contains "no" if input.env == "prod"
"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(Limits(timeout_s=5.0))
    yield box
    box.close()


def _evaluate(box: Sandbox, modules: dict[str, str], document: dict[str, str]) -> object:
    reply = json.loads(box.evaluate("k", modules, json.dumps(document), "data.stackyard"))
    return reply["result"][0]["expressions"][0]["value"]


def test_loaded_policies_are_evaluated_without_being_sent_again(sandbox: Sandbox) -> None:
    sandbox.load("k", {"x.rego": DENY})
    assert "k" in sandbox._loaded
    # The modules given now are not sent (the worker has them under "k"): what it evaluates
    # is what was loaded.
    assert _evaluate(sandbox, {"x.rego": "package other"}, {"env": "prod"}) == {
        "policies": {"x": {"deny": ["no"]}}
    }
    assert _evaluate(sandbox, {}, {"env": "dev"}) == {"policies": {"x": {"deny": []}}}


def test_a_module_that_does_not_compile_is_not_loaded_and_evaluate_reports_it(
    sandbox: Sandbox,
) -> None:
    broken = {"x.rego": "package stackyard.policies.x\n\ndeny contains if {"}
    with pytest.raises(RuntimeError):
        sandbox.load("k", broken)
    assert "k" not in sandbox._loaded
    with pytest.raises(RuntimeError):
        sandbox.evaluate("k", broken, "{}", "data.stackyard")
