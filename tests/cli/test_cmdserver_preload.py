"""The command server's children import nothing, and compile no SQL, on the everyday
commands' road.

A module a child imports, or a statement it compiles, is paid for by every command (a child
is thrown away after one), so ``cmdserver.warm`` imports and compiles them once. This runs the commands the way the server does (warm
once, fork a child per command, ``invoke`` in it) in a home whose ``dev`` is bound to the
machine's PostgreSQL and Redis, and lists what each child added to ``sys.modules`` and to
the shared statement cache. Time is
not measured here: ``bench/cli.py`` does that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from _platform import Stage

pytestmark = pytest.mark.integration

#: Run by a fresh interpreter: warm as the server does, then one forked child per command.
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from stackyard.cli import cmdserver
    cmdserver.warm()
    from stackyard.cli.main import invoke
    from stackyard.state.compiled import SHARED
    commands, out = json.loads(sys.argv[1]), sys.argv[2]
    report = []
    for argv in commands:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            before, cached = set(sys.modules), len(SHARED)
            try:
                code = invoke(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            added = sorted(set(sys.modules) - before)
            sys.stdout.flush()
            compiled = len(SHARED) - cached
            line = {"argv": argv, "code": code, "added": added, "compiled": compiled}
            os.write(write, json.dumps(line).encode())
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
        os.close(read)
        os.waitpid(pid, 0)
        report.append(json.loads(data))
    with open(out, "w") as f:
        json.dump(report, f)
    """
)


def test_a_child_imports_and_compiles_nothing_on_the_everyday_commands(
    stage: Stage, tmp_path: Path
) -> None:
    env = stage.name("dev")
    name = "preload-probe"
    score = tmp_path / "score.yaml"
    score.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "score.dev/v1b1",
                "metadata": {"name": name},
                "containers": {
                    "main": {
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "variables": {"DB_NAME": "${resources.db.name}"},
                    }
                },
                "resources": {"db": {"type": "postgres"}},
            }
        )
    )
    deploy = ["deploy", str(score), "--env", env, "--yes"]
    commands = [
        ["--help"],
        ["workload", "validate", str(score)],
        deploy,  # creates the role, database and grant, starts the workload
        deploy,  # nothing to change
        ["env", "list"],
        ["status", env],
        ["status", env, "-o", "json"],
        ["remove", name, "--env", env, "--yes"],
    ]
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(commands), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["code"] for r in report] == [0] * len(commands), (done.stdout[-3000:], report)
    imported = {" ".join(r["argv"]): r["added"] for r in report if r["added"]}
    assert not imported, (
        "a command server child imported these; add them to cmdserver.PRELOAD: "
        f"{json.dumps(imported, indent=1)}"
    )
    # Nor do they compile the state store's SQL: the server did (state/compiled.py).
    compiled = [(" ".join(r["argv"]), r["compiled"]) for r in report if r["compiled"]]
    assert not compiled, f"statements compiled by a child; add them to compiled.warm: {compiled}"
