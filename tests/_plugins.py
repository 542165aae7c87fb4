"""Installed-plugin metadata on disk, for tests of provider discovery through real entry
points (the ``plugin_dir`` fixture in ``conftest.py`` puts a folder on ``sys.path``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["install_plugin"]


def install_plugin(
    root: Path, dist: str, version: str, entries: dict[str, str], modules: dict[str, str]
) -> None:
    """A distribution ``dist`` declaring ``entries`` in ``stackyard.providers``, with ``modules``."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[stackyard.providers]\n{lines}")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
