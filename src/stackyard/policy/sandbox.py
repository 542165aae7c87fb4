"""The policy sandbox: Rego evaluated in a worker process with a time and a memory limit.

regorus has no limits of its own and runs in process, so a hostile policy (a huge
comprehension, deep recursion) could take minutes and gigabytes of the caller. Each
evaluation is sent to a long-lived worker (``stackyard.policy.worker``) that keeps the
compiled policies, runs under ``RLIMIT_AS``, and is killed and replaced when it passes the
time limit or dies of the memory limit. A normal decision pays one pipe round trip.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackyard.errors import StackyardError
from stackyard.policy.worker import HEADER, block

__all__ = ["Limits", "Sandbox", "SandboxError", "shared"]

#: The only variables the worker inherits: policies never see the caller's secrets.
_WORKER_ENV = frozenset({"PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR"})


class SandboxError(StackyardError):
    """An evaluation passed its time or memory limit, or the worker failed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How long one evaluation may take, and how much memory it may add."""

    timeout_s: float = 5.0
    memory_mb: int = 1024


class Sandbox:
    """One worker process (started on first use, restarted after a failure); thread-safe,
    evaluations are serialised."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._loaded: set[str] = set()

    def evaluate(self, key: str, modules: Mapping[str, str], document: str, query: str) -> str:
        """The interpreter's JSON result of ``query`` over ``modules`` (known as ``key``) with
        input ``document``; ``SandboxError`` past a limit, ``RuntimeError`` for a Rego error."""
        with self._lock:
            self._worker()  # (re)started first: a new worker has loaded nothing yet
            request: dict[str, Any] = {"key": key, "query": query}
            if key not in self._loaded or self._pid != os.getpid():
                request["modules"] = dict(modules)
            status, reply = self._call(request, document)
            self._loaded.add(key)
        if status == b"E":
            raise RuntimeError(reply)
        return reply

    def load(self, key: str, modules: Mapping[str, str]) -> None:
        """Have the worker compile ``modules`` as ``key`` now (starting it if need be), so that
        the first ``evaluate`` of that key sends and compiles nothing. Made ahead of the
        evaluation, from another thread (``Governor.warm``); an evaluation waits for it."""
        with self._lock:
            self._worker()
            if key in self._loaded and self._pid == os.getpid():
                return
            status, reply = self._call({"key": key, "modules": dict(modules)}, "null")
            if status == b"E":
                raise RuntimeError(reply)
            self._loaded.add(key)

    def start(self) -> None:
        """Start the worker now (a no-op when it runs), so that its start-up overlaps the
        caller's work before the first ``evaluate`` instead of being waited for there. Never
        waits: while another thread uses the worker (a ``load``), it is started already."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._worker()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the worker (it exits when its stdin closes)."""
        with self._lock:
            if self._pid == os.getpid():  # a forked child leaves its parent's worker alone
                self._stop(kill=False)

    def _call(self, request: dict[str, Any], document: str) -> tuple[bytes, str]:
        proc = self._worker()
        assert proc.stdin is not None and proc.stdout is not None  # made with pipes
        deadline = time.monotonic() + self.limits.timeout_s
        try:
            proc.stdin.write(block(json.dumps(request).encode()) + block(document.encode()))
            proc.stdin.flush()
            head = self._read(proc.stdout.fileno(), 1 + HEADER.size, deadline)
            body = self._read(proc.stdout.fileno(), HEADER.unpack(head[1:])[0], deadline)
        except TimeoutError:
            self._stop(kill=True)
            raise SandboxError(
                f"Policy evaluation passed its time limit of {self.limits.timeout_s:g} s",
                hint="Simplify the policy, or raise 'policy_timeout' in config.yaml.",
            ) from None
        except (OSError, EOFError):
            code = self._stop(kill=True)
            if code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGKILL):
                raise SandboxError(
                    f"Policy evaluation passed its memory limit of {self.limits.memory_mb} MiB",
                    hint="Simplify the policy, or raise 'policy_memory_mb' in config.yaml.",
                ) from None
            raise SandboxError(
                f"The policy worker stopped unexpectedly (exit status {code})",
                hint="Run the policy with 'stackyard policy test DIR' to find the fault.",
            ) from None
        status = head[:1]
        if status == b"M":
            self._stop(kill=True)
            raise SandboxError(
                f"Policy evaluation passed its memory limit of {self.limits.memory_mb} MiB",
                hint="Simplify the policy, or raise 'policy_memory_mb' in config.yaml.",
            )
        return status, body.decode()

    @staticmethod
    def _read(fd: int, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        left = size
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # a forked child must not share its parent's pipes
            self._proc, self._pid, self._loaded = None, os.getpid(), set()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "stackyard.policy.worker", str(self.limits.memory_mb)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                env={k: v for k, v in os.environ.items() if k in _WORKER_ENV},
            )
            self._loaded = set()
        return self._proc

    def _stop(self, *, kill: bool) -> int | None:
        proc, self._proc = self._proc, None
        self._loaded = set()
        if proc is None:
            return None
        if kill and proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


@functools.cache
def shared(limits: Limits) -> Sandbox:
    """The process's sandbox for ``limits``: one worker per process and limit set, kept
    across decisions because starting one costs about 50 ms; stopped at exit."""
    box = Sandbox(limits)
    atexit.register(box.close)
    return box
