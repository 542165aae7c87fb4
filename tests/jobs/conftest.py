"""Fixtures of the jobs tests: the site (``_jobsite``) on the SQLite home or on a fresh
PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _jobsite import Site, make_site


@pytest.fixture
def sqlite_site(
    library_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweeper: Any
) -> Iterator[Site]:
    """The site on the SQLite home (the embedded queue)."""
    yield from make_site(library_home, tmp_path, monkeypatch, sweeper.env, database_url=None)


@pytest.fixture
def pg_site(
    library_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sweeper: Any,
    pg_databases: Callable[[], str],
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Site]:
    """The site on a fresh PostgreSQL database (procrastinate), with databases on the
    machine's PostgreSQL."""
    from _platform import _binding_params

    url = pg_databases()
    yield from make_site(
        library_home,
        tmp_path,
        monkeypatch,
        sweeper.env,
        database_url=url,
        pg=_binding_params(postgres_admin_url, redis_url),
    )
