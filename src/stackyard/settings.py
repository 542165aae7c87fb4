"""Settings: configuration built once at the edge (flags > environment > ``config.yaml``)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stackyard.errors import InvalidInputError

__all__ = ["Settings"]

#: Keys ``config.yaml`` may set, with the environment variable that overrides each.
_ENV_VARS = {
    "database_url": "STACKYARD_DATABASE_URL",
    "secret_key": "STACKYARD_SECRET_KEY",
    "actor": "STACKYARD_USER",
    "registry": "STACKYARD_REGISTRY",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Where stackyard keeps its state and who is acting.

    ``home`` holds the SQLite database, the secret key file and ``config.yaml``.
    ``database_url`` is a SQLAlchemy URL (SQLite by default, or PostgreSQL).
    ``secret_key`` is an operator-given Fernet key; when None the key file in ``home`` is used.
    """

    home: Path
    database_url: str
    secret_key: str | None
    actor: str
    registry: str | None

    @classmethod
    def load(
        cls,
        *,
        home: Path | str | None = None,
        database_url: str | None = None,
        secret_key: str | None = None,
        actor: str | None = None,
        registry: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings: explicit arguments (flags) win, then the environment, then the file.

        ``environ`` defaults to ``os.environ``; tests pass their own.
        """
        env = os.environ if environ is None else environ
        root = Path(home or env.get("STACKYARD_HOME") or "~/.stackyard").expanduser()
        file = _read_config(root / "config.yaml")
        flags = {
            "database_url": database_url,
            "secret_key": secret_key,
            "actor": actor,
            "registry": registry,
        }
        values: dict[str, str | None] = {}
        for key, var in _ENV_VARS.items():
            values[key] = flags[key] or env.get(var) or _as_str(file.get(key))
        return cls(
            home=root,
            database_url=values["database_url"] or f"sqlite:///{root / 'state.db'}",
            secret_key=values["secret_key"],
            actor=values["actor"] or _os_user(),
            registry=values["registry"],
        )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot read {path}: {exc.strerror}", hint="Check the file's permissions."
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(
            f"{path} is not valid YAML", hint="Fix the file, or remove it to use the defaults."
        ) from exc
    if data is None:
        return {}
    unknown = sorted(set(data) - set(_ENV_VARS)) if isinstance(data, dict) else []
    if not isinstance(data, dict) or unknown:
        raise InvalidInputError(
            f"{path} must be a mapping of {', '.join(sorted(_ENV_VARS))}"
            + (f"; unknown keys: {', '.join(map(str, unknown))}" if unknown else ""),
            hint="Remove the unknown keys.",
        )
    return data


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid-{os.getuid()}"
