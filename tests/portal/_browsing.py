"""Test-only helpers of the portal's browser tests (a unique module name: every test folder
has its own helpers): Debian's Chromium under Playwright, and a screenshot that is checked
not blank and run through axe-core's serious and critical rules."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def launch() -> Iterator[Any]:
    """Debian's headless Chromium (skips when it or Playwright is missing)."""
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def distinct_bytes(png: bytes) -> int:
    """How many distinct byte values the decoded pixel rows of a PNG hold (a blank page,
    one colour, holds very few)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data = 8, b""
    while pos < len(png):
        length = struct.unpack(">I", png[pos : pos + 4])[0]
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


def snap(page: Any, artifacts: Path, name: str) -> None:
    """Save a screenshot, check it is not blank, and run axe's serious and critical rules."""
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert distinct_bytes(path.read_bytes()) > 16, f"{name}: blank screenshot"
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
    )
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:200] for n in v["nodes"][:3]]}
        for v in json.loads(result)["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: axe violations {json.dumps(bad, indent=1)}"
