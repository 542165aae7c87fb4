"""What every router uses: the authenticated identity, the server context, pagination, and
Score files from a request body written where the service layer can read them."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stackyard.api.context import Yard
from stackyard.api.schemas import SCORE_NAME, Page
from stackyard.errors import InvalidInputError
from stackyard.identity import Identity

#: Declares the bearer scheme in the OpenAPI document; the Authenticator reads the header.
BEARER = HTTPBearer(auto_error=False, description="A stackyard token (sy_...) or an OIDC JWT.")
MAX_PAGE = 500


def yard(request: Request) -> Yard:
    """The server's context."""
    found = request.app.state.yard
    assert isinstance(found, Yard)
    return found


def identity(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Identity:
    """The caller, from the ``Authorization`` header (401 without a valid one, 429 after too
    many failures from one client). Runs in a worker thread: it may read the store."""
    client = request.client.host if request.client else ""
    return yard(request).authenticator.authenticate(
        request.headers.get("authorization"), client=client
    )


#: The caller.
Who = Annotated[Identity, Depends(identity)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="Where the page starts: the `next` link of the last page."),
]


def page(
    request: Request, items: Sequence[Mapping[str, Any]], limit: int, cursor: str | None
) -> Page:
    """The page of ``items`` at ``cursor`` (an offset the previous page handed out)."""
    start = 0
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 9:
            raise InvalidInputError(
                f"Invalid cursor '{cursor[:20]}'", hint="Follow the 'next' link of a page."
            )
        start = int(cursor)
    chunk = [dict(i) for i in items[start : start + limit]]
    more = start + limit < len(items)
    return Page(items=chunk, next=next_link(request, str(start + limit)) if more else None)


def next_link(request: Request, cursor: str) -> str:
    """The request's own path and query with ``cursor`` replaced."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    query.append(("cursor", cursor))
    return f"{request.url.path}?{urlencode(query)}"


_NAME = re.compile(SCORE_NAME)


@contextmanager
def score_files(scores: Mapping[str, str]) -> Iterator[list[Path]]:
    """The Score files of a request body, written to a private temporary folder for the
    duration of the call (removed after)."""
    if not scores:
        raise InvalidInputError(
            "Give at least one Score file", hint='{"scores": {"score.yaml": "apiVersion: ..."}}'
        )
    bad = [n for n in scores if not _NAME.fullmatch(n)]
    if bad:
        raise InvalidInputError(
            f"Invalid Score file name '{bad[0][:60]}'",
            hint="Use a plain file name such as score.yaml (letters, digits, '.', '_', '-').",
        )
    with tempfile.TemporaryDirectory(prefix="stackyard-api-") as folder:
        paths = []
        for name, text in sorted(scores.items()):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        yield paths


@contextmanager
def folder(files: Mapping[str, str]) -> Iterator[Path]:
    """A request's folder of files (relative paths, no ``..``), written to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="stackyard-api-") as root:
        base = Path(root)
        for rel, text in files.items():
            parts = Path(rel).parts
            if (
                not parts
                or Path(rel).is_absolute()
                or any(p in ("..", ".") or not _NAME.fullmatch(p) for p in parts)
            ):
                raise InvalidInputError(
                    f"Invalid file path '{rel[:60]}'",
                    hint="Use relative paths of plain names, such as policies/limits.rego.",
                )
            path = base.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        yield base
