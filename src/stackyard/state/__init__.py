"""The state package: the store contract (``api``) and its SQL implementation (``sql``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackyard.settings import Settings
    from stackyard.state.sql import SqlStateStore

__all__ = ["open_store"]


def open_store(settings: Settings, *, notify: Callable[[str], None] | None = None) -> SqlStateStore:
    """Open the state store the settings name, with its secret box.

    SQLAlchemy is imported here, not at package import, so the core can import
    ``stackyard.state.api`` without pulling in a database driver. Opening checks the schema
    revision with one query; when the store is behind, it is upgraded and ``notify`` (by
    default: a line on stderr) is told so first.
    """
    from stackyard.state.secrets import SecretBox
    from stackyard.state.sql import SqlStateStore

    box = SecretBox.from_home(settings.home, key=settings.secret_key)
    return SqlStateStore(settings.database_url, box, notify=notify or _on_stderr)


def _on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
