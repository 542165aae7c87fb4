"""Audit integrity against someone who can write the state database but not the home: a cut
tail, a rewritten chain and a deleted middle row are all found by ``stackyard audit verify``,
on SQLite and on a real PostgreSQL server. Chains written before the key are re-keyed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from _as_user import cli
from stackyard.policy.audit import chain_hash

pytestmark = pytest.mark.integration
#: The exit code of a failed verification (docs/errors.md); 1 is kept for internal errors.
FAILED = 8


class Home:
    """A home on one state store, with the tools of an attacker who has only the database."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url

    def sy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.path, *args, columns=300)

    def append(self, n: int) -> None:
        """``n`` audited actions, as stackyard writes them."""
        from stackyard.environments.workspace import Workspace
        from stackyard.settings import Settings

        with Workspace.open(Settings.load(home=self.path)) as ws:
            for i in range(n):
                ws.access.audit("access.manage", f"user:u{i}", "ok", {"grant": {"role": "viewer"}})

    def verify(self) -> tuple[int, dict[str, object], str]:
        res = self.sy("audit", "verify", "--output", "json")
        text = self.sy("audit", "verify")
        assert "Traceback" not in res.stderr + text.stderr
        return res.returncode, json.loads(res.stdout), text.stdout

    def db(self) -> sa.Engine:
        return sa.create_engine(self.url)

    def drop_guards(self, conn: sa.Connection) -> None:
        """What an attacker with the database does first: remove the append-only triggers."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER audit_events_append_only ON audit_events"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))

    def rows(self, conn: sa.Connection) -> list[sa.Row[tuple[object, ...]]]:
        return list(conn.execute(sa.text("SELECT * FROM audit_events ORDER BY seq")))

    def rehash_from(self, conn: sa.Connection, seq: int) -> None:
        """Recompute every hash from ``seq`` on with the public chain function."""
        rows = self.rows(conn)
        prev = rows[seq - 2].hash if seq > 1 else "sha256:" + "0" * 64
        for r in rows[seq - 1 :]:
            detail = r.detail if isinstance(r.detail, dict) else json.loads(r.detail)
            digest = chain_hash(
                prev,
                seq=r.seq,
                at=r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                result=r.result,
                detail=detail,
            )
            conn.execute(
                sa.text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": digest, "s": r.seq},
            )
            prev = digest


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_home(
    request: pytest.FixtureRequest, library_home: Path, tmp_path: Path
) -> Iterator[Home]:
    """The test's home on SQLite or on a fresh PostgreSQL database, with a few events."""
    if request.param == "sqlite":
        url = f"sqlite:///{library_home / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_databases")()
        (library_home / "config.yaml").write_text(json.dumps({"database_url": url}))
    home = Home(library_home, url)
    home.append(6)
    yield home


def test_an_intact_chain_verifies_and_is_keyed_and_checkpointed(audit_home: Home) -> None:
    code, report, text = audit_home.verify()
    assert code == 0 and report["ok"], report
    assert report["checkpoint"] == report["events"]
    assert "audit chain intact" in text
    key = audit_home.path / "audit.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert ((audit_home.path / "audit.head").stat().st_mode & 0o777) == 0o600
    engine = audit_home.db()
    try:
        with engine.connect() as conn:
            assert all(r.hash.startswith("hmac-sha256:") for r in audit_home.rows(conn))
    finally:
        engine.dispose()


def test_a_cut_tail_is_found_after_the_guards_are_dropped(audit_home: Home) -> None:
    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            audit_home.drop_guards(conn)
            last = audit_home.rows(conn)[-1].seq
            conn.execute(sa.text("DELETE FROM audit_events WHERE seq >= :s"), {"s": last - 1})
    finally:
        engine.dispose()
    code, report, text = audit_home.verify()
    assert code == FAILED, report
    assert report["events"] == last - 2 and report["checkpoint"] == last
    assert "newest events were deleted" in str(report["reason"])
    assert "audit chain broken" in text and "newest events were deleted" in text


def test_an_edited_row_rehashed_with_the_public_chain_function_is_found(
    audit_home: Home,
) -> None:
    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            audit_home.drop_guards(conn)
            conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
            audit_home.rehash_from(conn, 3)
    finally:
        engine.dispose()
    code, report, _ = audit_home.verify()
    assert code == FAILED and report["broken_at"] == 3, report
    assert "edited" in str(report["reason"])


def test_a_chain_rewritten_from_the_first_row_is_found_by_the_checkpoint(
    audit_home: Home,
) -> None:
    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            audit_home.drop_guards(conn)
            conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
            audit_home.rehash_from(conn, 1)  # every row now fits the public (unkeyed) function
    finally:
        engine.dispose()
    code, report, _ = audit_home.verify()
    assert code == FAILED, report
    assert "rewritten" in str(report["reason"]), report


def test_a_deleted_middle_row_is_found(audit_home: Home) -> None:
    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            audit_home.drop_guards(conn)
            conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 3"))
    finally:
        engine.dispose()
    code, report, _ = audit_home.verify()
    assert code == FAILED and report["broken_at"] == 4, report
    assert "an event was removed" in str(report["reason"])


def test_a_forged_checkpoint_is_refused(audit_home: Home) -> None:
    head = audit_home.path / "audit.head"
    heads = json.loads(head.read_text())
    for point in heads.values():
        point["seq"] = 1
    head.write_text(json.dumps(heads))
    res = audit_home.sy("audit", "verify")
    assert res.returncode == FAILED
    assert "was not signed with this home's audit key" in res.stderr


def test_a_chain_written_before_the_key_is_rekeyed_and_stays_protected(
    audit_home: Home,
) -> None:
    """A home from before keyed chains: its legacy events verify, the next append re-keys
    with an ``audit.rekey`` event, and a legacy row rewritten afterwards is found."""
    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            audit_home.drop_guards(conn)
            audit_home.rehash_from(conn, 1)  # what the previous release wrote: sha256 only
    finally:
        engine.dispose()
    (audit_home.path / "audit.head").unlink()
    (audit_home.path / "audit.key").unlink()
    code, report, _ = audit_home.verify()
    assert code == 0 and report["ok"] and report["checkpoint"] is None, report
    legacy = int(str(report["events"]))

    audit_home.append(1)
    code, report, _ = audit_home.verify()
    assert code == 0 and report["events"] == legacy + 2, report
    events = json.loads(audit_home.sy("audit", "--output", "json").stdout)
    rekey = events[legacy]
    assert rekey["action"] == "audit.rekey" and rekey["detail"]["legacy_events"] == legacy
    assert rekey["hash"].startswith("hmac-sha256:")

    engine = audit_home.db()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
            audit_home.rehash_from(conn, 2)  # the whole chain, legacy part and all
    finally:
        engine.dispose()
    code, report, _ = audit_home.verify()
    assert code == FAILED and "rewritten" in str(report["reason"]), report


def test_concurrent_appenders_only_move_the_checkpoint_forward(audit_home: Home) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from stackyard.environments.workspace import Workspace\n"
                "from stackyard.settings import Settings\n"
                "with Workspace.open(Settings.load()) as ws:\n"
                "    for i in range(10):\n"
                "        ws.access.audit('access.manage', f'user:c{i}', 'ok', {})\n",
            ],
            env={**os.environ, "STACKYARD_HOME": str(audit_home.path)},
            stdin=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    code, report, _ = audit_home.verify()
    assert code == 0 and report["ok"], report
    assert report["checkpoint"] == report["events"]
