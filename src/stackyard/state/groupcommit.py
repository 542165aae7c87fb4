"""Group commit: concurrent small writes share one transaction.

The engine's hot path is two tiny fenced writes per resource (journal an intent, then commit
its result). SQLite has one writer at a time, so ten threads each paying for a whole
transaction queue behind each other. Here the first caller becomes the *leader*: it takes
every write queued so far, runs them in one transaction, commits, and wakes the others. If
any write in the batch fails, the transaction rolls back and each write is run again alone,
so only the bad one fails. The fence (lease) check runs once per lease per transaction. Each caller still returns
only after its own write is durable, so the journal's ordering guarantee holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from stackyard.state.hotpath import RawTxn
from stackyard.state.locks import FENCED

T = TypeVar("T")


class _Op(Generic[T]):
    __slots__ = ("error", "fn", "lead", "result", "wake")

    def __init__(self, fn: Callable[[RawTxn], T]) -> None:
        self.fn = fn
        self.wake = threading.Event()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[no-any-return]


class GroupCommit:
    """Runs writes in shared transactions. ``transaction`` opens one (already guarded), and
    ``guard`` translates a single write's database errors."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[RawTxn]],
        guard: Callable[[], AbstractContextManager[None]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._transaction = transaction
        self._guard = guard
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._pending: list[_Op[Any]] = []
        self._busy = False

    def run(self, fn: Callable[[RawTxn], T]) -> T:
        """Run ``fn(conn)`` in a (possibly shared) transaction; returns after it is committed."""
        op: _Op[T] = _Op(fn)
        with self._mutex:
            self._pending.append(op)
            lead = not self._busy
            if lead:
                self._busy = True
        if not lead:
            op.wake.wait()
            if not op.lead:
                return op.outcome()
        with self._mutex:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        try:
            self._execute(batch)
        finally:
            with self._mutex:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.wake.set()
                else:
                    self._busy = False
        return op.outcome()

    def _execute(self, batch: list[_Op[Any]]) -> None:
        try:
            if len(batch) == 1 or not self._together(batch):
                for op in batch:  # one op, or a batch that failed together: each on its own
                    self._alone(op)
        finally:
            for op in batch:
                op.lead = False
                op.wake.set()

    def _together(self, batch: list[_Op[Any]]) -> bool:
        """Run the whole batch in one transaction; False (and nothing written) if any op failed."""
        results: list[Any] = []
        try:
            with self._transaction() as conn:
                conn.info[FENCED] = set()
                try:
                    for op in batch:
                        with self._guard():
                            results.append(op.fn(conn))
                finally:
                    conn.info.pop(FENCED, None)
        except BaseException:
            return False  # rolled back: rerun each op alone so only the bad one fails
        for op, result in zip(batch, results, strict=True):
            op.result = result
        return True

    def _alone(self, op: _Op[Any]) -> None:
        try:
            with self._transaction() as conn:
                op.result = op.fn(conn)
        except BaseException as exc:
            op.error = exc
