from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.errors import InvalidInputError
from stackyard.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_live_under_the_home(tmp_path: Path) -> None:
    s = Settings.load(environ={"STACKYARD_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.database_url == f"sqlite:///{tmp_path / 'state.db'}"
    assert (s.secret_key, s.registry, s.lock_timeout_s) == (None, None, 300.0)


def test_the_actor_is_the_os_account_and_no_variable_changes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 4: ``STACKYARD_USER=root`` (or USER/LOGNAME, or config.yaml) must not
    make anyone root."""
    import os
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    s = Settings.load(environ={"STACKYARD_HOME": str(tmp_path), "STACKYARD_USER": "root-ish"})
    assert s.actor == me
    (tmp_path / "config.yaml").write_text("actor: mallory\n")
    with pytest.raises(InvalidInputError, match="unknown keys: actor"):
        Settings.load(environ={"STACKYARD_HOME": str(tmp_path)})


def test_home_defaults_to_dot_stackyard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.load(environ={})
    assert s.home == tmp_path / ".stackyard"
    assert s.actor  # the OS user


@pytest.mark.parametrize(
    ("file", "env", "flag", "expected"),
    [
        ("postgresql://file/db", None, None, "postgresql://file/db"),
        ("postgresql://file/db", "postgresql://env/db", None, "postgresql://env/db"),
        ("postgresql://file/db", "postgresql://env/db", "sqlite:///flag.db", "sqlite:///flag.db"),
    ],
    ids=["file-only", "env-beats-file", "flag-beats-env"],
)
def test_flags_beat_environment_beats_file(
    tmp_path: Path, file: str, env: str | None, flag: str | None, expected: str
) -> None:
    (tmp_path / "config.yaml").write_text(f"database_url: {file}\nregistry: oci://r\n")
    environ = {"STACKYARD_HOME": str(tmp_path)}
    if env:
        environ["STACKYARD_DATABASE_URL"] = env
    s = Settings.load(database_url=flag, environ=environ)
    assert s.database_url == expected
    assert s.registry == "oci://r"


def test_every_key_has_an_environment_variable(tmp_path: Path) -> None:
    s = Settings.load(
        environ={
            "STACKYARD_HOME": str(tmp_path),
            "STACKYARD_SECRET_KEY": "k",
            "STACKYARD_REGISTRY": "ghcr.io/acme",
            "STACKYARD_LOCK_TIMEOUT": "2m",
        }
    )
    assert (s.secret_key, s.registry, s.lock_timeout_s) == ("k", "ghcr.io/acme", 120.0)


@pytest.mark.parametrize("text", ["soon", "-1", "5d", "nan", "1e400"], ids=str)
def test_a_bad_lock_timeout_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInputError, match="Invalid lock_timeout"):
        Settings.load(environ={"STACKYARD_HOME": str(tmp_path), "STACKYARD_LOCK_TIMEOUT": text})


def test_home_flag_wins_and_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.load(home="~/elsewhere", environ={"STACKYARD_HOME": "/nope"})
    assert s.home == tmp_path / "elsewhere"


def test_unknown_config_keys_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("databse_url: x\n")
    with pytest.raises(InvalidInputError, match="unknown keys: databse_url"):
        Settings.load(environ={"STACKYARD_HOME": str(tmp_path)})


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("database_url: [\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        Settings.load(environ={"STACKYARD_HOME": str(tmp_path)})


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings.load(environ={"STACKYARD_HOME": str(tmp_path)})
    with pytest.raises(AttributeError):
        s.actor = "mallory"  # type: ignore[misc]
