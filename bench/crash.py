"""Crash-consistency bench: SIGKILL an applying worker at random moments, then converge.

Each run starts a worker applying a 20-node noop plan with latency (``_worker.py``, forked),
kills it with SIGKILL at a random moment, converges the same graph in-process and destroys
it, and checks the ledger: no name created twice (duplicates), nothing live that the state
does not record (orphans). Prints one JSON object::

    {"runs": 50, "duplicates": 0, "orphans": 0, "failures": 0}

``failures`` counts runs that did not converge cleanly for any other reason (the apply after
the crash failed, a recorded resource is missing, an intent stayed pending, a further plan
still had changes, or destroy left something live). Details of bad runs go to stderr.

    python bench/crash.py --runs 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import _worker


def main() -> int:
    parser = argparse.ArgumentParser(description="Crash-consistency bench (kill -9 mid-apply).")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    args = parser.parse_args()

    totals = {"runs": 0, "duplicates": 0, "orphans": 0, "failures": 0}
    with tempfile.TemporaryDirectory(prefix="stackyard-crash-") as tmp:
        window = _worker.apply_duration(
            Path(tmp) / "calibrate",
            nodes=args.nodes,
            latency_ms=args.latency_ms,
            parallelism=args.parallelism,
        )
        for i in range(args.runs):
            report = _worker.crash_once(
                Path(tmp) / f"run{i}",
                args.seed + i,
                nodes=args.nodes,
                latency_ms=args.latency_ms,
                parallelism=args.parallelism,
                expected_s=window,
            )
            totals["runs"] += 1
            totals["duplicates"] += len(report.duplicates)
            totals["orphans"] += len(report.orphans)
            failed = bool(
                report.error
                or not report.ok
                or report.missing
                or report.pending_intents
                or report.replan_changes
                or report.live_after_destroy
            )
            totals["failures"] += failed
            if failed or report.duplicates or report.orphans:
                sys.stderr.write(json.dumps(dataclasses.asdict(report)) + "\n")
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
