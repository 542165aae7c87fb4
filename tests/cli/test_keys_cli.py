"""``stackyard keys`` shows the public key to share, and ``keys remove`` exists, as the docs
say (issue 12, papercuts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _as_user import cli

pytestmark = pytest.mark.integration


def test_keys_shows_the_public_key_and_remove_stops_trusting_one(library_home: Path) -> None:
    shown = cli(library_home, "keys")
    assert shown.returncode == 0, shown.stderr
    assert "-----BEGIN PUBLIC KEY-----" in shown.stdout
    listed = json.loads(cli(library_home, "keys", "--output", "json").stdout)
    own = listed["signing_key"]
    assert own and own in [t["key_id"] for t in listed["trusted"]]

    removed = cli(library_home, "keys", "remove", own)
    assert removed.returncode == 0, removed.stderr
    assert f"no longer trusted: {own}" in removed.stdout
    after = json.loads(cli(library_home, "keys", "--output", "json").stdout)
    assert own not in [t["key_id"] for t in after["trusted"]]

    again = cli(library_home, "keys", "remove", own)
    assert again.returncode == 2, (again.stdout, again.stderr)
    assert "is not trusted" in again.stderr
    assert "Traceback" not in again.stderr
