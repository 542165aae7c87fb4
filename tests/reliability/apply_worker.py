"""The reliability tests' apply worker: runs ``bench/_worker.py`` (one worker for tests and benches).

Usage: ``python tests/reliability/apply_worker.py --home H --env E --nodes 20 --latency-ms 30
--seed S [--lock-ttl 2]``; exit codes 0 ok, 4 ``LockHeldError``, 1 anything else.
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    worker = Path(__file__).resolve().parents[2] / "bench" / "_worker.py"
    runpy.run_path(str(worker), run_name="__main__")
