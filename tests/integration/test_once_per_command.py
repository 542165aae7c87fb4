"""Each thing once per command (issue 13): a no-change deploy decrypts each stored secret once
and opens one PostgreSQL connection per server and database.

Counted, never timed: a spy on the real Fernet decryption (``MultiFernet.decrypt``) sees each
token it is asked to decrypt, and a spy on the provider pool's ``Connections._open`` sees
each connection it opens. The deploy runs in process against the machine's PostgreSQL and
Redis (``stage``: the example platform, ``<prefix>-dev`` created), with a workload that has
a ``postgres`` resource (a role with a generated password, a database, a grant) read by a
``sleep`` container, as ``bench/cli.py`` deploys it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from _platform import Stage
from stackyard.environments.deploy import deploy_files

pytestmark = pytest.mark.integration

SCORE = """\
apiVersion: score.dev/v1b1
metadata: {name: once}
containers:
  main:
    image: none
    command: ["sleep", "3600"]
    variables:
      DB_NAME: ${resources.db.name}
      DB_USER: ${resources.db.username}
resources:
  db:
    type: postgres
"""


def _spy_decryptions(monkeypatch: pytest.MonkeyPatch) -> Counter[bytes]:
    from cryptography.fernet import MultiFernet

    seen: Counter[bytes] = Counter()
    real = MultiFernet.decrypt

    def decrypt(self: MultiFernet, token: bytes, ttl: int | None = None) -> bytes:
        seen[token] += 1
        return real(self, token, ttl)

    monkeypatch.setattr(MultiFernet, "decrypt", decrypt)
    return seen


def _spy_connections(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str | None]]:
    from stackyard.providers.postgres.connection import Connections

    opened: Counter[tuple[str, str | None]] = Counter()
    real = Connections._open

    def _open(self: Connections, url: str, dbname: str | None, limits: Any) -> Any:
        opened[(url, dbname)] += 1
        return real(self, url, dbname, limits)

    monkeypatch.setattr(Connections, "_open", _open)
    return opened


def test_a_no_change_deploy_decrypts_once_and_connects_once_per_backend(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stackyard.providers.postgres as pg_provider

    dev = stage.name("dev")
    score = tmp_path / "score.yaml"
    score.write_text(SCORE)
    with stage.ws() as ws:  # the first command: creates the role, the database, the grant
        first = deploy_files(ws, [score], dev, confirm=lambda _p: True)
        assert first.plan is not None and first.plan.has_changes
    pg_provider._CONNECTIONS.close()  # a new command starts with no connection open

    decrypted = _spy_decryptions(monkeypatch)
    opened = _spy_connections(monkeypatch)
    with stage.ws() as ws:  # the second command: nothing to change
        again = deploy_files(ws, [score], dev, confirm=lambda _p: pytest.fail("no change"))
        assert again.plan is not None and not again.plan.has_changes
    with sqlite3.connect(stage.home / "state.db") as db:  # the encrypted values stored
        secrets_stored = sum(
            db.execute(f"SELECT count(*) FROM {table} WHERE secret_blob IS NOT NULL").fetchone()[0]
            for table in ("resources", "instances")
        )

    assert decrypted, "the deploy reads the stored secrets (the role's password)"
    twice = {t[:12]: n for t, n in decrypted.items() if n > 1}
    assert not twice, f"tokens decrypted more than once in one command: {twice}"
    assert len(decrypted) <= secrets_stored
    assert opened, "the deploy observes the role, the database and the grant"
    more = {key[1]: n for key, n in opened.items() if n > 1}
    assert not more, f"more than one connection to a server and database: {more}"
