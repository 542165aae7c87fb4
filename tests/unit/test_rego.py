"""The Rego adapter: per-policy isolation, compile errors, threads, and Rego unit tests."""

from __future__ import annotations

import threading

import pytest

from stackyard.model.platform import Policy
from stackyard.policy.decision import PolicySet
from stackyard.policy.rego import Compiled, Module, RegoError, run_tests

pytestmark = pytest.mark.unit

DENY_X = """package stackyard
import rego.v1
deny contains {"msg": "x is set", "rule": "no-x"} if input.x
"""
WARN_X = """package stackyard
import rego.v1
deny := set()
warn contains "x seen" if input.x
"""


def _policy(name: str, source: str, layer: str = "organisation", target: str = "") -> Policy:
    return Policy(name, layer, ("plan",), {"p.rego": source}, target)


def test_same_rule_names_stay_attributed_to_their_policy() -> None:
    c = Compiled({"a": [Module("p.rego", DENY_X)], "b-two": [Module("p.rego", WARN_X)]})
    out = c.evaluate({"x": True})
    assert out["a"]["deny"] == [{"msg": "x is set", "rule": "no-x"}]
    assert out["b-two"] == {"deny": [], "warn": ["x seen"]}


def test_a_module_that_does_not_compile_names_its_policy() -> None:
    with pytest.raises(RegoError, match=r"Policy 'broken': p\.rego does not compile"):
        Compiled({"broken": [Module("p.rego", "package stackyard\ndeny contains x if {")]})


def test_layers_add_up_and_the_decision_names_policy_rule_and_layer() -> None:
    ps = PolicySet([_policy("org", DENY_X), _policy("env-lift", WARN_X, "environment", "dev")])
    d = ps.evaluate("plan", {"x": True}, env="dev", env_type="development", actor="ann")
    assert d.outcome == "deny"
    assert {(r.policy, r.kind, r.rule, r.layer) for r in d.results} == {
        ("org", "deny", "no-x", "organisation"),
        ("env-lift", "warn", "warn", "environment"),
    }
    other = ps.evaluate("plan", {"x": True}, env="prod", env_type="production", actor="ann")
    assert other.policies == ("org",)


def test_decisions_from_many_threads() -> None:
    ps = PolicySet([_policy("org", DENY_X)])
    ps.evaluate("plan", {"x": True}, env=None, env_type=None, actor="main")  # compiled here
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def decide() -> None:
        try:
            outcomes.append(
                ps.evaluate("plan", {"x": True}, env=None, env_type=None, actor="t").outcome
            )
        except BaseException as exc:  # a panic in the interpreter is a BaseException
            errors.append(exc)

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and outcomes == ["deny"] * 4


def test_rego_unit_tests_pass_and_fail() -> None:
    tests = """package stackyard
import rego.v1
test_fires if { count(deny) == 1 with input as {"x": true} }
test_wrong if { count(deny) == 1 with input as {"x": false} }
"""
    results = {
        r.name: r.passed
        for r in run_tests([Module("p.rego", DENY_X), Module("p_test.rego", tests)])
    }
    assert results == {"test_fires": True, "test_wrong": False}
