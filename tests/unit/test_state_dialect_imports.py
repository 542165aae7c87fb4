"""The state tables on a SQLite store never import SQLAlchemy's PostgreSQL dialect (issue 13),
and still give JSON columns the type the migrations create on each dialect (JSONB on
PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from stackyard.state import tables

SQLITE_ONLY = textwrap.dedent(
    """
    import sys
    import sqlalchemy as sa
    from stackyard.state import sql, tables

    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateTable(tables.resources))
        tables.upsert(conn, tables.resources)
        sql._Statements("sqlite")
        str(sa.select(tables.resources).compile(conn))
    print("\\n".join(m for m in sys.modules if m.startswith("sqlalchemy.dialects.postgresql")))
    """
)


def test_a_sqlite_store_does_not_import_the_postgresql_dialect() -> None:
    res = subprocess.run(
        [sys.executable, "-c", SQLITE_ONLY], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"imported: {res.stdout.split()}"


def test_json_columns_are_jsonb_on_postgresql_and_json_on_sqlite() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    pg = str(CreateTable(tables.resources).compile(dialect=postgresql.dialect()))
    lite = str(CreateTable(tables.resources).compile(dialect=sqlite.dialect()))
    assert "config JSONB NOT NULL" in pg
    assert "config JSON NOT NULL" in lite
    assert isinstance(tables.insert_for("postgresql")(tables.resources), postgresql.Insert)
    assert isinstance(tables.insert_for("sqlite")(tables.resources), sqlite.Insert)
    assert isinstance(tables.JSON, sa.types.TypeEngine)
