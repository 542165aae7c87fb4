"""The ``stackyard doctor`` command: which runtimes this machine can use, and why not."""

from __future__ import annotations

import os

from rich.markup import escape

from stackyard.cli.common import OUTPUT
from stackyard.cli.output import OutputFormat, print_json, stdout


def doctor(output: OutputFormat = OUTPUT) -> None:
    """Say which runtimes this machine can use (local, containers) and why not.

    Probes podman by starting a container that needs no image, with this machine's quirks
    (they are cached for the containers runtime); reports a Docker client too.
    """
    from stackyard.runtime.doctor import diagnose
    from stackyard.settings import Settings

    settings = Settings.load()
    report = diagnose(settings.home, os.environ)
    if output is OutputFormat.JSON:
        print_json(report)
        return
    out = stdout()
    for name, info in report["runtimes"].items():
        mark = "[green]✓[/]" if info["usable"] else "[red]✗[/]"
        out.print(f"{mark} runtime {name}: {escape(str(info['detail']))}")
    local = report["runtimes"]["local"]["isolation"]
    out.print(f"  local isolation: {escape(str(local['detail']))}")
    for name, info in report["engines"].items():
        mark = "[green]✓[/]" if info["works"] else "[yellow]-[/]"
        out.print(f"{mark} {name}: {escape(str(info['detail']))}")
