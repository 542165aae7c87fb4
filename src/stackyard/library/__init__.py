"""The built-in component library: data folders (``component.yaml``, README, tests), not code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The library's component names."""
    return sorted(p.name for p in ROOT.iterdir() if (p / "component.yaml").is_file())


def path(name: str) -> Path:
    """The folder of library component ``name``."""
    folder = ROOT / name
    if name not in names():
        raise KeyError(f"No library component '{name}'; there are: {', '.join(names())}")
    return folder
