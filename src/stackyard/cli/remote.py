"""Remote mode: which server the CLI talks to, the ``login`` and ``logout`` commands, and the
refusal of commands that only run on a home.

A server is configured by ``STACKYARD_URL`` (with ``STACKYARD_TOKEN``) or by ``stackyard
login``, which stores the URL and token in ``$XDG_CONFIG_HOME/stackyard/remote.json`` (mode
0600). Without either, the CLI works on the local home as it always did. ``STACKYARD_URL=``
(set and empty) forces local mode whatever is stored.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from stackyard.errors import InvalidInputError, PermissionDeniedError

#: The environment variables of remote mode.
URL_VAR = "STACKYARD_URL"
TOKEN_VAR = "STACKYARD_TOKEN"  # noqa: S105 - the variable's name, not a token
LOGIN_HINT = "Run 'stackyard login URL' (or set STACKYARD_TOKEN) with a token from your admin."


@dataclass(frozen=True, slots=True)
class Target:
    """The server to call and the token to call it with (``None``: not logged in)."""

    url: str
    token: str | None
    source: str  # "env" or the path of the stored login

    def require_token(self) -> str:
        """The token, or ``PermissionDeniedError`` (exit 6) saying how to log in."""
        if not self.token:
            raise PermissionDeniedError(f"Not logged in to {self.url}", hint=LOGIN_HINT)
        return self.token


def config_path(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where ``login`` keeps the URL and token."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stackyard" / "remote.json"


def _stored(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise InvalidInputError(
            f"Cannot read the stored login {path}", hint="Run 'stackyard logout', then log in."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return {}
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


def target(environ: os._Environ[str] | dict[str, str] | None = None) -> Target | None:
    """The configured server, or ``None`` for local mode."""
    env = os.environ if environ is None else environ
    url = env.get(URL_VAR)
    if url is not None and not url.strip():
        return None  # set and empty: local mode on purpose
    path = config_path(env)
    stored = _stored(path) if path.exists() else {}
    token = env.get(TOKEN_VAR) or None
    if url:
        url = normalise(url)
        if token is None and stored.get("url") == url:
            token = stored.get("token") or None
        return Target(url, token, "env")
    if not stored:
        return None
    return Target(stored["url"], token or stored.get("token") or None, str(path))


def active() -> bool:
    """True when commands go to a server."""
    return target() is not None


def normalise(url: str) -> str:
    """``url`` without trailing slashes, checked to be http(s)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"Invalid server URL '{url[:80]}'", hint="Use http://HOST:PORT or https://HOST."
        )
    return url


def refuse(command: str, why: str = "it works on this machine's home") -> None:
    """Refuse ``command`` in remote mode (exit 2): never run it locally by surprise."""
    found = target()
    if found is None:
        return
    raise InvalidInputError(
        f"'stackyard {command}' cannot run through the server {found.url}: {why}",
        hint="Run it on the server's machine, or in local mode with STACKYARD_URL= "
        "(set and empty) or after 'stackyard logout'.",
    )


def login(
    url: str = typer.Argument(..., help="The server, e.g. https://stackyard.example.com."),
    token: str | None = typer.Option(
        None, "--token", help="An API token (default: STACKYARD_TOKEN, else asked for)."
    ),
) -> None:
    """Log in to a stackyard server: every command then runs there."""
    from rich.markup import escape

    from stackyard.cli.output import stdout
    from stackyard.cli.remote_client import Client

    base = normalise(url)
    secret = token or os.environ.get(TOKEN_VAR) or _ask()
    who = Client(Target(base, secret, "login")).get("/api/v1/whoami")
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": base, "token": secret}, fh)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    teams = who.get("teams") or []
    stdout().print(
        f"[green]✓[/] logged in to {escape(base)} as [bold]{escape(str(who.get('user')))}[/]"
        + (f" (teams: {escape(', '.join(teams))})" if teams else "")
        + f" via {escape(str(who.get('via')))}"
    )


def _ask() -> str:
    if not sys.stdin.isatty():
        raise InvalidInputError(
            "No token given", hint="Pass --token T or set STACKYARD_TOKEN (no terminal to ask on)."
        )
    import getpass

    secret = getpass.getpass("Token: ").strip()
    if not secret:
        raise InvalidInputError("No token given", hint="Paste the token your admin made.")
    return secret


def logout() -> None:
    """Forget the stored server and token: commands work on the local home again."""
    from stackyard.cli.output import stdout

    path = config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        stdout().print("Not logged in.")
        return
    stdout().print("[green]✓[/] logged out")
