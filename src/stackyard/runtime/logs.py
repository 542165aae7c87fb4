"""Container logs of a local workload: the backlog, following new lines, and rotations.

The supervisor writes ``logs/<container>.log`` and rotates it to ``<container>.log.1`` at a
line end; this side only reads.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from stackyard.host import supervise
from stackyard.runtime.layout import WorkloadPaths, read_status

__all__ = ["LogReader", "container_names", "read_logs"]

_FOLLOW_POLL = 0.1


def container_names(paths: WorkloadPaths) -> list[str]:
    """The containers of a workload: from ``status.json``, else from the log files."""
    st = read_status(paths)
    if st is not None and st.containers:
        return list(st.containers)
    return sorted(p.name[: -len(".log")] for p in paths.logs.glob("*.log"))


def read_logs(
    paths: WorkloadPaths,
    containers: Sequence[str],
    *,
    prefixed: bool,
    follow: bool,
    lines: int | None,
) -> Iterator[str]:
    """The lines of ``containers``, one after another; ``follow`` until the supervisor is gone."""
    readers = [
        LogReader(paths.logs / f"{c}.log", f"{c} | " if prefixed else "") for c in containers
    ]
    try:
        for r in readers:
            yield from r.backlog(lines, final=not follow)
        while follow:
            fresh = [line for r in readers for line in r.poll()]
            yield from fresh
            if not fresh:
                if supervise.running(paths.pidfile) is None:
                    for r in readers:
                        yield from r.poll(final=True)
                    return
                time.sleep(_FOLLOW_POLL)
    finally:
        for r in readers:
            r.close()


class LogReader:
    """Reads one container log from its backlog on, across rotations."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self._file: BinaryIO | None = None
        self._ino = 0
        self._partial = b""

    def _read(self) -> bytes:
        """What was appended since the last read (opening the log once it exists)."""
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return b""
            self._ino = os.fstat(self._file.fileno()).st_ino
        return self._file.read()

    def _split(self, data: bytes, *, final: bool) -> list[str]:
        """Complete lines of what was read; an unfinished last line waits unless ``final``."""
        *complete, rest = (self._partial + data).split(b"\n")
        self._partial = rest
        if final and rest:
            complete.append(rest)
            self._partial = b""
        return [self.prefix + line.decode(errors="replace") for line in complete]

    def backlog(self, lines: int | None, *, final: bool) -> list[str]:
        """The existing lines (the last ``lines``, from the rotated file too if needed)."""
        data = self._read()
        if lines is None or data.count(b"\n") < lines:
            with contextlib.suppress(OSError):
                data = self.path.with_name(self.path.name + ".1").read_bytes() + data
        out = self._split(data, final=final)
        if lines is not None:
            out = list(deque(out, maxlen=lines)) if lines > 0 else []
        return out

    def poll(self, *, final: bool = False) -> list[str]:
        """The lines written since the last call; follows a rotation to the new file."""
        out = self._split(self._read(), final=False)
        try:
            rotated = self._file is not None and os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            rotated = False
        if rotated:
            self.close()
            out += self._split(self._read(), final=False)
        if final:
            out += self._split(b"", final=True)
        return out

    def close(self) -> None:
        """Close the open file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None
