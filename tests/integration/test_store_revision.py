"""Opening a store checks its schema revision with one query, and runs Alembic only to upgrade.

On SQLite and on a fresh database of the machine's PostgreSQL: a new store is migrated
silently; a current store is opened without importing Alembic (seen from ``sys.modules`` in a
fresh interpreter); a store left at an older revision is upgraded, saying so on stderr; a
store at a revision this stackyard does not know is refused with exit 2 and a hint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from _as_user import cli
from _cli import finished
from stackyard.errors import InvalidInputError
from stackyard.state import migrations
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.integration

VERSIONS = Path(migrations.__file__).resolve().parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[str]:
    """A store URL with nothing in it yet: a file in the home, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'state.db'}"
        return
    make: Callable[[], str] = request.getfixturevalue("pg_databases")
    yield make()


def _engine(url: str) -> sa.Engine:
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return sa.create_engine(u)


def _revision(url: str) -> str | None:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return migrations.current(conn)
    finally:
        engine.dispose()


def _migrate_to(url: str, revision: str) -> None:
    """Leave the store at ``revision``, as an older stackyard would have."""
    cfg = Config()
    cfg.set_main_option("script_location", str(VERSIONS))
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def _open_in_a_fresh_interpreter(url: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``open_store`` as a command calls it; prints whether Alembic got imported."""
    probe = textwrap.dedent(
        """
        import sys
        from stackyard.settings import Settings
        from stackyard.state import open_store

        open_store(Settings.load()).close()
        print("alembic imported" if "alembic" in sys.modules else "alembic not imported")
        """
    )
    env = {**os.environ, "STACKYARD_HOME": str(home), "STACKYARD_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_static_revisions_are_alembics() -> None:
    """``REVISIONS`` (read without Alembic) lists ``versions/`` oldest first, ending at head."""
    scripts = ScriptDirectory(str(VERSIONS))
    walked = [s.revision for s in scripts.walk_revisions()]  # head first
    assert tuple(reversed(walked)) == migrations.REVISIONS
    assert migrations.head() == migrations.HEAD == scripts.get_current_head()


def test_a_new_store_is_migrated_silently(url: str) -> None:
    said: list[str] = []
    SqlStateStore(url, SecretBox(SecretBox.generate_key()), notify=said.append).close()
    assert _revision(url) == migrations.HEAD
    assert said == []


def test_a_current_store_opens_without_alembic(url: str, home: Path) -> None:
    SqlStateStore(url, SecretBox.from_home(home)).close()
    res = _open_in_a_fresh_interpreter(url, home)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "alembic not imported"
    assert res.stderr == ""


def test_an_older_store_is_upgraded_saying_so(url: str, home: Path) -> None:
    _migrate_to(url, "0003")
    assert _revision(url) == "0003"
    res = _open_in_a_fresh_interpreter(url, home)
    assert res.returncode == 0, res.stderr
    assert res.stderr == f"upgrading the state store from 0003 to {migrations.HEAD}\n"
    assert _revision(url) == migrations.HEAD
    again = _open_in_a_fresh_interpreter(url, home)
    assert again.stderr == "" and again.stdout.strip() == "alembic not imported"


def test_a_newer_store_is_refused(url: str, home: Path) -> None:
    SqlStateStore(url, SecretBox.from_home(home)).close()
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(InvalidInputError, match="schema revision 9999") as info:
        SqlStateStore(url, SecretBox.from_home(home))
    assert info.value.hint and "STACKYARD_DATABASE_URL" in info.value.hint
    assert _revision(url) == "9999", "nothing was changed"
    # What a user sees: exit 2, the message and the hint, from any command opening the store.
    res = cli(home, "env", "list", STACKYARD_DATABASE_URL=url)
    shown = finished(("env", "list"), res.returncode, res.stdout, res.stderr)
    assert shown.code == 2, str(shown)
    assert "schema revision 9999" in shown.err and "hint:" in shown.err
