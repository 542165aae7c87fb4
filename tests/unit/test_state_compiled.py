"""The SQLite stores of a process share their compiled statements (``state/compiled.py``)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from stackyard.model.environment import Deployment
from stackyard.state import compiled
from stackyard.state.records import Records
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore


def _store(path: Path) -> SqlStateStore:
    return SqlStateStore(
        f"sqlite:///{path}", SecretBox(SecretBox.generate_key()), notify=lambda _l: None
    )


def test_a_second_store_reuses_the_first_ones_statements_and_reads_its_own_rows(
    tmp_path: Path,
) -> None:
    first, second = _store(tmp_path / "a.db"), _store(tmp_path / "b.db")
    try:
        one = Deployment.start(env="dev", kind="deploy", actor="ann")
        Records(first).put_deployment(one)
        assert [d.id for d in Records(first).deployments("dev")] == [one.id]
        cached = len(compiled.SHARED)
        two = Deployment.start(env="dev", kind="deploy", actor="bob")
        Records(second).put_deployment(two)
        # The same statements, compiled by the first store's engine: nothing new is cached,
        # and each store reads its own rows.
        assert [(d.id, d.actor) for d in Records(second).deployments("dev")] == [(two.id, "bob")]
        assert len(compiled.SHARED) == cached
        assert [d.id for d in Records(first).deployments("dev")] == [one.id]
    finally:
        first.close()
        second.close()


def test_dialects_that_compile_differently_do_not_share(tmp_path: Path) -> None:
    """The key is what a dialect compiles with: a setting that changes the SQL (here the
    paramstyle) gives statements of their own."""
    cache = compiled.SharedCompiledCache()
    qmark = sa.create_engine("sqlite://", execution_options={"compiled_cache": cache})
    named = sa.create_engine(
        "sqlite://", paramstyle="named", execution_options={"compiled_cache": cache}
    )
    query = sa.select(sa.literal_column("1")).where(sa.bindparam("x") == 1)
    for engine in (qmark, named, qmark, named):
        with engine.connect() as conn:
            assert conn.execute(query, {"x": 1}).scalar() == 1
    assert len(cache) == 2


def test_after_warm_a_new_store_compiles_nothing_for_everyday_reads_and_writes(
    tmp_path: Path,
) -> None:
    """``warm`` (what the command server runs before it forks) leaves a new store of the
    process nothing to compile for a deployment's record, its listing and a snapshot."""
    compiled.warm()
    store = _store(tmp_path / "fresh.db")
    try:
        cached = len(compiled.SHARED)
        records = Records(store)
        records.put_deployment(Deployment.start(env="dev", kind="deploy", actor="ann"))
        assert len(records.deployments("dev")) == 1
        store.snapshot("dev")
        records.instances("dev")
        assert len(compiled.SHARED) == cached
    finally:
        store.close()
