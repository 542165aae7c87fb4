from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.errors import InvalidInputError
from stackyard.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_live_under_the_home(tmp_path: Path) -> None:
    s = Settings.load(environ={"STACKYARD_HOME": str(tmp_path), "STACKYARD_USER": "alice"})
    assert s.home == tmp_path
    assert s.database_url == f"sqlite:///{tmp_path / 'state.db'}"
    assert (s.secret_key, s.registry, s.actor) == (None, None, "alice")


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
            "STACKYARD_USER": "bob",
            "STACKYARD_REGISTRY": "ghcr.io/acme",
        }
    )
    assert (s.secret_key, s.actor, s.registry) == ("k", "bob", "ghcr.io/acme")


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
