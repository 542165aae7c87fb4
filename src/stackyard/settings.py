"""Settings: configuration built once at the edge (flags > environment > ``config.yaml``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stackyard.errors import InvalidInputError

__all__ = ["Settings"]

#: Keys ``config.yaml`` may set, with the environment variable that overrides each.
_ENV_VARS = {
    "database_url": "STACKYARD_DATABASE_URL",
    "secret_key": "STACKYARD_SECRET_KEY",
    "registry": "STACKYARD_REGISTRY",
    "registry_plain_http": "STACKYARD_REGISTRY_PLAIN_HTTP",
    "lock_timeout": "STACKYARD_LOCK_TIMEOUT",
    "max_resources": "STACKYARD_MAX_RESOURCES",
    "policy_timeout": "STACKYARD_POLICY_TIMEOUT",
    "policy_memory_mb": "STACKYARD_POLICY_MEMORY_MB",
    "oidc_issuer": "STACKYARD_OIDC_ISSUER",
    "oidc_audience": "STACKYARD_OIDC_AUDIENCE",
    "oidc_jwks": "STACKYARD_OIDC_JWKS",
    "oidc_user_claim": "STACKYARD_OIDC_USER_CLAIM",
    "oidc_groups_claim": "STACKYARD_OIDC_GROUPS_CLAIM",
    "oidc_teams": "STACKYARD_OIDC_TEAMS",
    "oidc_client_id": "STACKYARD_OIDC_CLIENT_ID",
    "oidc_redirect_url": "STACKYARD_OIDC_REDIRECT_URL",
    "oidc_scopes": "STACKYARD_OIDC_SCOPES",
    "token_max_ttl": "STACKYARD_TOKEN_MAX_TTL",
}

#: How long a writer waits for a busy environment's lock by default (seconds).
DEFAULT_LOCK_TIMEOUT_S = 300.0
#: Provider resources one resolution may expand to (a hostile Score is refused before planning).
DEFAULT_MAX_RESOURCES = 5000
#: Wall-clock and address-space limits of one policy evaluation (its worker process).
DEFAULT_POLICY_TIMEOUT_S = 5.0
DEFAULT_POLICY_MEMORY_MB = 1024
#: The longest lifetime an API token may be given (``stackyard token create --ttl``).
DEFAULT_TOKEN_MAX_TTL_S = 365 * 86400.0
#: The OIDC claim listing a caller's groups (groups map to teams).
DEFAULT_OIDC_GROUPS_CLAIM = "groups"
#: The portal's OIDC client secret: read from the environment only (never ``config.yaml``).
OIDC_CLIENT_SECRET_VAR = "STACKYARD_OIDC_CLIENT_SECRET"  # noqa: S105 (a variable name)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where stackyard keeps its state and who is acting.

    ``home`` holds the SQLite database, the secret key file and ``config.yaml``.
    ``database_url`` is a SQLAlchemy URL (SQLite by default, or PostgreSQL).
    ``secret_key`` is an operator-given Fernet key; when None the key file in ``home`` is used.
    ``actor`` is the operating-system account running the command; no variable or file can
    change it (see docs/governance.md, the threat model). Only a caller in Python that has
    established an identity itself (the server of a later issue, or a test) passes ``actor``.
    ``lock_timeout_s`` is how long a writer waits for a busy environment (0: fail at once).
    ``max_resources`` caps how many provider resources one resolution may expand to;
    ``policy_timeout_s`` and ``policy_memory_mb`` cap one policy evaluation.
    ``registry`` is ``[http://|https://]HOST[:PORT]/NAMESPACE`` of a remote registry (None: the
    local layout in ``home``); ``registry_plain_http`` reaches it without TLS, for every
    command (``STACKYARD_REGISTRY_PLAIN_HTTP=1``, or an ``http://`` prefix on the registry).
    ``teams`` are teams the actor belongs to besides those the ``Team`` documents list: an
    authenticated caller's OIDC groups (set by the server, never read from a variable).
    ``oidc_*`` configure the OIDC issuer the server accepts tokens from (docs/identity.md):
    its ``issuer``, accepted ``audience`` values, ``jwks`` (a URL or a file), the claim naming
    the user (None: ``preferred_username``, else ``sub``), the claim listing groups and an
    optional group-to-team map (empty: a group is the team of that name). The portal's
    sign-in (authorization code + PKCE) is on when ``oidc_client_id`` is set:
    ``oidc_client_secret`` (environment only; None: a public client), ``oidc_redirect_url``
    (None: derived from the request) and ``oidc_scopes`` beyond ``openid profile email``.
    ``token_max_ttl_s`` is the longest lifetime an API token may be given.
    """

    home: Path
    database_url: str
    secret_key: str | None
    actor: str
    registry: str | None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    max_resources: int = DEFAULT_MAX_RESOURCES
    policy_timeout_s: float = DEFAULT_POLICY_TIMEOUT_S
    policy_memory_mb: int = DEFAULT_POLICY_MEMORY_MB
    registry_plain_http: bool = False
    teams: tuple[str, ...] = ()
    oidc_issuer: str | None = None
    oidc_audience: tuple[str, ...] = ()
    oidc_jwks: str | None = None
    oidc_user_claim: str | None = None
    oidc_groups_claim: str = DEFAULT_OIDC_GROUPS_CLAIM
    oidc_teams: tuple[tuple[str, str], ...] = ()
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_redirect_url: str | None = None
    oidc_scopes: tuple[str, ...] = ()
    token_max_ttl_s: float = DEFAULT_TOKEN_MAX_TTL_S

    @classmethod
    def load(
        cls,
        *,
        home: Path | str | None = None,
        database_url: str | None = None,
        secret_key: str | None = None,
        actor: str | None = None,
        registry: str | None = None,
        lock_timeout_s: float | None = None,
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
            "registry": registry,
            "registry_plain_http": None,
            "lock_timeout": None if lock_timeout_s is None else str(lock_timeout_s),
            "max_resources": None,
            "policy_timeout": None,
            "policy_memory_mb": None,
            "oidc_issuer": None,
            "oidc_audience": None,
            "oidc_jwks": None,
            "oidc_user_claim": None,
            "oidc_groups_claim": None,
            "oidc_teams": None,
            "oidc_client_id": None,
            "oidc_redirect_url": None,
            "oidc_scopes": None,
            "token_max_ttl": None,
        }
        if isinstance(file.get("oidc_teams"), dict):  # a mapping in config.yaml
            file["oidc_teams"] = ",".join(f"{k}={v}" for k, v in file["oidc_teams"].items())
        values: dict[str, str | None] = {}
        for key, var in _ENV_VARS.items():
            values[key] = flags[key] or env.get(var) or _as_str(file.get(key))
        return cls(
            home=root,
            database_url=values["database_url"] or f"sqlite:///{root / 'state.db'}",
            secret_key=values["secret_key"],
            actor=actor or _os_user(),
            registry=values["registry"],
            lock_timeout_s=parse_duration(values["lock_timeout"], "lock_timeout")
            if values["lock_timeout"]
            else DEFAULT_LOCK_TIMEOUT_S,
            max_resources=_positive_int(values["max_resources"], "max_resources")
            or DEFAULT_MAX_RESOURCES,
            policy_timeout_s=parse_duration(values["policy_timeout"], "policy_timeout")
            if values["policy_timeout"]
            else DEFAULT_POLICY_TIMEOUT_S,
            policy_memory_mb=_positive_int(values["policy_memory_mb"], "policy_memory_mb")
            or DEFAULT_POLICY_MEMORY_MB,
            registry_plain_http=_flag(values["registry_plain_http"], "registry_plain_http"),
            oidc_issuer=values["oidc_issuer"] or None,
            oidc_audience=_words(values["oidc_audience"]),
            oidc_jwks=values["oidc_jwks"] or None,
            oidc_user_claim=values["oidc_user_claim"] or None,
            oidc_groups_claim=values["oidc_groups_claim"] or DEFAULT_OIDC_GROUPS_CLAIM,
            oidc_teams=_pairs(values["oidc_teams"], "oidc_teams"),
            oidc_client_id=values["oidc_client_id"] or None,
            oidc_client_secret=env.get(OIDC_CLIENT_SECRET_VAR) or None,
            oidc_redirect_url=values["oidc_redirect_url"] or None,
            oidc_scopes=tuple(w for s in _words(values["oidc_scopes"]) for w in s.split()),
            token_max_ttl_s=parse_ttl(values["token_max_ttl"], "token_max_ttl")
            if values["token_max_ttl"]
            else DEFAULT_TOKEN_MAX_TTL_S,
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


def parse_duration(text: str, what: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m`` or ``1h`` (``InvalidInputError`` otherwise)."""
    raw = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:]) if raw else None
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not raw or value < 0 or value != value or value == float("inf"):
        raise InvalidInputError(
            f"Invalid {what} {text!r}",
            hint="Give a duration such as 0 (fail at once), 30s, 5m or 1h.",
        )
    return value


def parse_ttl(text: str, what: str) -> float:
    """Seconds from a positive lifetime: ``90s``, ``15m``, ``12h``, ``30d`` or ``2w`` (a bare
    number is seconds); ``InvalidInputError`` otherwise."""
    raw = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise InvalidInputError(
            f"Invalid {what} {text!r}", hint="Give a lifetime such as 12h, 30d or 2w."
        )
    return value


def _words(text: str | None) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(w.strip() for w in (text or "").split(",") if w.strip())


def _pairs(text: str | None, what: str) -> tuple[tuple[str, str], ...]:
    """``a=b,c=d`` as pairs (``InvalidInputError`` for an item without ``=``)."""
    out = []
    for item in _words(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError(
                f"Invalid {what} item {item!r}",
                hint="Give GROUP=TEAM pairs separated by commas, such as 'ops-admins=ops'.",
            )
        out.append((key.strip(), value.strip()))
    return tuple(out)


def _positive_int(text: str | None, what: str) -> int | None:
    """A positive whole number from a setting, None when unset."""
    if not text:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidInputError(
            f"Invalid {what} {text!r}", hint="Give a positive whole number, such as 5000."
        )
    return value


def _flag(text: str | None, what: str) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off (any case); unset is no."""
    raw = (text or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise InvalidInputError(f"Invalid {what} {text!r}", hint="Give 1 (yes) or 0 (no).")


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _os_user() -> str:
    """The account of the process's effective uid: never a variable (``getpass.getuser``
    reads ``LOGNAME``/``USER`` first, which anyone can set)."""
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers)
        return f"uid-{uid}"
