"""Binding matching: the most specific match wins, the nearer level breaks equal specificity,
and every candidate says why it matched or not."""

from __future__ import annotations

import pytest

from stackyard.model.ids import ResourceUid
from stackyard.model.platform import Binding
from stackyard.resolve.bindings import Level, match

pytestmark = pytest.mark.unit

ENV = Level(
    "environment dev",
    (
        Binding("postgres", "env-db", "^1"),
        Binding("postgres", "env-db-orders", "^1", id="orders"),
    ),
)
TYPE = Level(
    "environment type development",
    (
        Binding("postgres", "type-db", "^1"),
        Binding("postgres", "type-large", "^1", klass="large"),
        Binding("postgres", "type-large-orders", "^1", klass="large", id="orders"),
        Binding("redis", "cache", "^1"),
    ),
)


@pytest.mark.parametrize(
    ("uid", "winner", "reason"),
    [
        (
            "postgres.default#app.db",
            "env-db",
            "type-level binding loses to the environment's at equal specificity",
        ),
        ("postgres.large#app.db", "type-large", "a class beats a bare type, whatever the level"),
        ("postgres.default#orders", "env-db-orders", "an exact id beats everything"),
        ("postgres.large#orders", "type-large-orders", "id+class beats id alone"),
        ("redis.default#app.cache", "cache", "only the type level binds redis"),
    ],
    ids=["nearer", "class", "id", "id-and-class", "inherited"],
)
def test_winner(uid: str, winner: str, reason: str) -> None:
    m = match(ResourceUid.parse(uid), [ENV, TYPE])
    assert m.winner is not None, reason
    assert m.winner.binding.component == winner, reason
    assert m.winner.reason.endswith("(winner)")


def test_candidates_explain_themselves() -> None:
    m = match(ResourceUid.parse("postgres.default#app.db"), [ENV, TYPE])
    reasons = {c.binding.component: c.reason for c in m.candidates}
    assert "is nearer" in reasons["type-db"]
    assert "class 'large' is not the request's class 'default'" in reasons["type-large"]
    assert "id 'orders' is not the request's id 'app.db'" in reasons["env-db-orders"]
    assert "redis" not in {c.binding.type for c in m.candidates}


def test_unknown_type_suggests_a_bound_one() -> None:
    m = match(ResourceUid.parse("postgress.default#app.db"), [ENV, TYPE])
    assert m.winner is None and not m.candidates
    assert m.suggestion([ENV, TYPE]) == "postgres"
