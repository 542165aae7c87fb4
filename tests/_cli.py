"""Test-only: a finished CLI run as one value, and the checks every end-to-end CLI test makes.

The runs themselves are made by ``_as_user.cli`` (or a test's own ``Popen`` when it runs
commands side by side); this module holds what is checked after: no traceback and no internal
error, ever, and the exit code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Result:
    """One finished CLI run."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"stackyard {' '.join(self.args)} → {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def finished(args: Sequence[str], code: int, out: str, err: str) -> Result:
    """The run as a ``Result``; fails the test if it printed a traceback or an internal error
    (an unhandled exception), whatever its exit code."""
    result = Result(tuple(args), code, out, err)
    for text in (result.out, result.err):
        assert "Traceback" not in text, str(result)
        assert "internal error" not in text, str(result)
    return result


def ok(result: Result) -> Result:
    """``result``, which must have exited 0."""
    assert result.code == 0, str(result)
    return result
