"""TTLs use the state store's clock: under a skewed client clock (``faketime``), ``env create
--ttl 72h`` expires 72 h after the store's now, and a reaper whose clock is 400 days behind
destroys nothing fresh. The state is kept in the machine's PostgreSQL, whose clock is not
skewed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest

from _platform import EXAMPLES
from _services import require_or_skip

pytestmark = pytest.mark.reliability

FAKETIME = shutil.which("faketime")
HOUR = 3600.0

SKEW_TYPE = """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: skewed}
spec:
  description: Ephemeral, with no core (nothing to start), for clock tests.
  runtime: local
  ephemeral: true
  ttl: {default: 4h, maximum: 72h}
"""


@pytest.fixture
def store_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database to keep one test's state in."""
    name = f"sy_clock_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg = urlparse(postgres_admin_url)
    auth = pg.username or "postgres"
    if pg.password:
        auth += f":{pg.password}"
    try:
        yield f"postgresql+psycopg://{auth}@{pg.hostname}:{pg.port or 5432}/{name}"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sy(
    home: Path, url: str, *args: str, skew: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STACKYARD_HOME": str(home),
        "STACKYARD_DATABASE_URL": url,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    cmd = [sys.executable, "-m", "stackyard.cli", *args]
    if skew is not None:
        assert FAKETIME is not None
        cmd = [FAKETIME, "-f", skew, *cmd]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )


def _store(url: str, name: str) -> tuple[str, float | None, float]:
    """The environment's status and expiry, and the store's now."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute(
            "SELECT status, expires_at, extract(epoch FROM now())::float8"
            " FROM environments WHERE name = %s",
            (name,),
        ).fetchone()
    assert row is not None, f"no environment {name}"
    return row[0], row[1], row[2]


@pytest.fixture
def platform(library_home: Path, tmp_path: Path, store_url: str) -> Path:
    if FAKETIME is None:
        require_or_skip("faketime is not installed (apt-get install faketime)")
    plat = tmp_path / "platform"
    plat.mkdir()
    shutil.copy(EXAMPLES / "platform" / "teams.yaml", plat / "teams.yaml")
    (plat / "environment-types.yaml").write_text(SKEW_TYPE)
    res = sy(library_home, store_url, "platform", "apply", str(plat), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    return library_home


def test_a_ttl_counts_from_the_store_clock_not_the_clients(
    platform: Path,
    store_url: str,
    sweeper,  # type: ignore[no-untyped-def]
) -> None:
    name = sweeper.env
    args = ("env", "create", name, "--type", "skewed", "--owner", "team-checkout")
    made = sy(platform, store_url, *args, "--ttl", "72h", skew="+1825d")
    assert made.returncode == 0, made.stdout + made.stderr
    status, expires, now = _store(store_url, name)
    assert status == "ready" and expires is not None
    # 72 h from the store's now; under the client's clock it would be five years later
    assert abs((expires - now) - 72 * HOUR) < 10 * 60, (expires - now) / HOUR
    # a client running five years ahead does not reap it either: the store says it is fresh
    reaped = sy(platform, store_url, "env", "reap", "--output", "json", skew="+1825d")
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert json.loads(reaped.stdout)["reaped"] == []
    assert _store(store_url, name)[0] == "ready"
    done = sy(platform, store_url, "env", "destroy", name, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_reaper_with_a_clock_400_days_behind_destroys_nothing_fresh(
    platform: Path,
    store_url: str,
    sweeper,  # type: ignore[no-untyped-def]
) -> None:
    fresh, old = sweeper.env, f"{sweeper.env}-old"
    for name, skew in ((fresh, "-400d"), (old, None)):  # fresh: made by a client 400 days behind
        args = ("env", "create", name, "--type", "skewed", "--owner", "team-checkout")
        made = sy(platform, store_url, *args, "--ttl", "1h", skew=skew)
        assert made.returncode == 0, made.stdout + made.stderr
    # an honest reaper leaves the fresh one alone: its hour counts from the store's now
    reaped = sy(platform, store_url, "env", "reap", "--output", "json")
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert json.loads(reaped.stdout)["reaped"] == []
    # the old one expired an hour ago by the store's clock
    with psycopg.connect(store_url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(
            "UPDATE environments SET expires_at = extract(epoch FROM now()) - 3600 WHERE name = %s",
            (old,),
        )
    reaped = sy(platform, store_url, "env", "reap", "--output", "json", skew="-400d")
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert json.loads(reaped.stdout)["reaped"] == [old]  # the store's clock decides, both ways
    assert _store(store_url, fresh)[0] == "ready"
    assert _store(store_url, old)[0] == "destroyed"
    done = sy(platform, store_url, "env", "destroy", fresh, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_sqlite_store_refuses_a_clock_running_behind_it(
    platform: Path,
    tmp_path: Path,
    sweeper,  # type: ignore[no-untyped-def]
) -> None:
    """A SQLite store has no clock of its own: a machine clock far behind what it recorded is
    refused, rather than making fresh environments look expired."""
    url = f"sqlite:///{tmp_path / 'skew.db'}"
    plat = tmp_path / "platform"
    assert sy(platform, url, "platform", "apply", str(plat), "--yes").returncode == 0
    name = sweeper.env
    args = ("env", "create", name, "--type", "skewed", "--owner", "team-checkout")
    assert sy(platform, url, *args, "--ttl", "1h").returncode == 0
    behind = sy(platform, url, "env", "reap", skew="-400d")
    assert behind.returncode != 0
    assert "clock is" in behind.stderr and "behind" in behind.stderr, behind.stderr
    assert sy(platform, url, "env", "destroy", name, "--yes").returncode == 0


_TAKE_OVER = """
import sys
from stackyard.errors import LockHeldError
from stackyard.settings import Settings
from stackyard.state import open_store

with open_store(Settings.load()) as store:
    try:
        store.acquire("leased", holder="skewed-writer", ttl_s=30)
    except LockHeldError as exc:
        print("HELD", exc.holder)
        sys.exit(0)
    print("TOOK OVER")
    sys.exit(1)
"""


def test_a_client_clock_running_ahead_cannot_take_over_a_live_lease(
    library_home: Path, store_url: str
) -> None:
    """Leases run out by the store's clock: a writer whose clock is an hour ahead would
    otherwise see every live lease as expired and take it over."""
    if FAKETIME is None:
        require_or_skip("faketime is not installed (apt-get install faketime)")
    from stackyard.settings import Settings
    from stackyard.state import open_store

    with open_store(Settings.load(database_url=store_url)) as store:
        lease = store.acquire("leased", holder="honest-writer", ttl_s=600)
        env = {
            **os.environ,
            "STACKYARD_HOME": str(library_home),
            "STACKYARD_DATABASE_URL": store_url,
        }
        res = subprocess.run(
            [FAKETIME, "-f", "+1h", sys.executable, "-c", _TAKE_OVER],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "HELD honest-writer" in res.stdout
        store.check_fence(lease)  # still ours
        store.release(lease)


def test_fenced_writes_measure_the_lease_by_the_store_clock(
    library_home: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every journal write is fenced; with a client clock an hour ahead of PostgreSQL the
    lease must still be live for its holder (it was refused as expired, failing every write
    of every deploy), and with one an hour behind an expired lease must still be refused."""
    import time as real_time
    import uuid

    from stackyard.errors import LockLostError
    from stackyard.settings import Settings
    from stackyard.state import hotpath, locks, open_store
    from stackyard.state.api import Intent

    class Skewed:
        def __init__(self, by: float) -> None:
            self.by = by

        def time(self) -> float:
            return real_time.time() + self.by

    def intent() -> Intent:
        return Intent(uuid.uuid4().hex, "fenced", "create", "a/b", "noop.resource", "n", {})

    with open_store(Settings.load(database_url=store_url)) as store:
        lease = store.acquire("fenced", holder="writer", ttl_s=30)
        monkeypatch.setattr(hotpath, "time", Skewed(+HOUR))
        monkeypatch.setattr(locks, "time", Skewed(+HOUR))
        store.begin(lease, intent())  # live by the store's clock
        monkeypatch.setattr(hotpath, "time", Skewed(-HOUR))
        monkeypatch.setattr(locks, "time", Skewed(-HOUR))
        with psycopg.connect(store_url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute("UPDATE locks SET expires_at = expires_at - 60 WHERE env = 'fenced'")
        with pytest.raises(LockLostError, match="expired"):
            store.begin(lease, intent())
