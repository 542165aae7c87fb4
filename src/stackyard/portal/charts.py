"""Bar charts as SVG, drawn on the server (the cost page's): one bar per item, its amount
beside it. Every text is escaped; no script, no style attribute."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from markupsafe import Markup, escape

ROW_H, LABEL_W, BAR_W, TOP = 24, 260, 360, 8
MAX_LABEL = 38


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        return Decimal(0)


def bars(items: Sequence[tuple[str, str]], *, title: str, currency: str) -> Markup:
    """A horizontal bar chart of ``(label, amount)`` pairs (amounts as decimal text)."""
    values = [(label, _amount(amount)) for label, amount in items]
    top = max((v for _, v in values), default=Decimal(0)) or Decimal(1)
    height = TOP * 2 + max(1, len(values)) * ROW_H
    width = LABEL_W + BAR_W + 120
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"<title>{escape(title)}</title>"
    ]
    if not values:
        parts.append(
            f'<text x="8" y="{TOP + 16}" font-family="sans-serif" font-size="12" '
            f'fill="#4a5160">No cost recorded</text>'
        )
    for i, (label, value) in enumerate(values):
        y = TOP + i * ROW_H
        length = float(value / top) * BAR_W
        short = label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"
        parts.append(
            f"<g><title>{escape(label)}: {escape(str(value))} {escape(currency)}</title>"
            f'<text x="4" y="{y + 16}" font-family="sans-serif" font-size="12" '
            f'fill="#1b1f24">{escape(short)}</text>'
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{max(length, 1):.1f}" height="{ROW_H - 8}" '
            f'fill="#2f6fb3"/>'
            f'<text x="{LABEL_W + max(length, 1) + 6:.1f}" y="{y + 16}" font-family="sans-serif" '
            f'font-size="12" fill="#1b1f24">{escape(str(value))} {escape(currency)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text above is escaped)
