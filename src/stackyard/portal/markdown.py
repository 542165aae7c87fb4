"""A component's README as HTML: CommonMark through markdown-it-py with raw HTML off, so any
markup in the README shows as text, and links limited to safe schemes (markdown-it refuses
``javascript:``, ``vbscript:``, ``file:`` and ``data:`` links)."""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render(text: str) -> Markup:
    """``text`` (Markdown) as safe HTML: raw HTML escaped, unsafe links dropped."""
    return Markup(_parser().render(text))  # noqa: S704  (html=False: markdown-it escapes)
