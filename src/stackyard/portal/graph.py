"""The resource graph of an environment as an SVG picture, drawn on the server: workloads →
resource requests → component instances → provider resources, each box coloured by health.

Every text is escaped here (``markupsafe.escape``); the picture holds no script and no style
attribute, so it passes the portal's CSP inline or as a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

COLUMNS = ("Workloads", "Resource requests", "Component instances", "Provider resources")
#: Fill and stroke per health; anything else is grey (unknown).
COLOURS = {
    "ok": ("#e3f4e6", "#1f7a33"),
    "ready": ("#e3f4e6", "#1f7a33"),
    "running": ("#e3f4e6", "#1f7a33"),
    "degraded": ("#fff4d6", "#8a5a00"),
    "starting": ("#fff4d6", "#8a5a00"),
    "stopped": ("#fde7e7", "#a4161a"),
    "missing": ("#fde7e7", "#a4161a"),
    "failed": ("#fde7e7", "#a4161a"),
}
GREY = ("#eef0f3", "#4a5160")
BOX_W, BOX_H, GAP_X, GAP_Y, TOP, LEFT = 210, 34, 50, 12, 46, 10
MAX_LABEL = 30


@dataclass
class Graph:
    """Nodes in four columns and the edges between them."""

    columns: list[list[tuple[str, str, str]]] = field(default_factory=lambda: [[], [], [], []])
    edges: set[tuple[str, str]] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)

    def node(self, column: int, key: str, label: str, health: str) -> None:
        """Add a node once (``key`` unique across the graph)."""
        if key not in self._seen:
            self._seen.add(key)
            self.columns[column].append((key, label, health))

    def edge(self, a: str, b: str) -> None:
        """Link two nodes."""
        self.edges.add((a, b))

    @property
    def size(self) -> int:
        """How many nodes."""
        return sum(len(c) for c in self.columns)


def build(
    status: Mapping[str, Any], requests: Mapping[str, Sequence[tuple[str, str, str]]]
) -> Graph:
    """The graph of an environment's ``status`` (``inspect.status``) and each workload's
    resource requests ``(name, type, uid)``."""
    g = Graph()
    by_uid: dict[str, list[Mapping[str, Any]]] = {}
    for r in status.get("resources", []):
        by_uid.setdefault(str(r.get("uid") or ""), []).append(r)
    for name, w in sorted(status.get("workloads", {}).items()):
        g.node(0, f"w:{name}", name, str(w.get("state", "unknown")))
        for req_name, req_type, uid in requests.get(name, ()):
            key = f"q:{name}/{req_name}"
            g.node(1, key, f"{req_name} ({req_type})", _worst(by_uid.get(uid, [])))
            g.edge(f"w:{name}", key)
            g.edge(key, f"i:{uid}")
    for uid, resources in sorted(by_uid.items()):
        component = str(resources[0].get("component") or "")
        g.node(2, f"i:{uid}", f"{uid} {component}".strip(), _worst(resources))
        for r in resources:
            key = f"r:{r['address']}"
            g.node(3, key, f"{r['address']} ({r.get('kind', '')})", str(r.get("health", "")))
            g.edge(f"i:{uid}", key)
    # requests whose instance has no recorded resource still get a box
    for _a, b in list(g.edges):
        if b.startswith("i:") and b not in g._seen:
            g.node(2, b, b[2:], "unknown")
    return g


def _worst(resources: Sequence[Mapping[str, Any]]) -> str:
    order = ["missing", "stopped", "failed", "degraded", "unobservable", "unknown", "ok"]
    found = [str(r.get("health", "unknown")) for r in resources]
    if not found:
        return "unknown"
    return min(found, key=lambda h: order.index(h) if h in order else order.index("unknown"))


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def render(g: Graph, *, title: str) -> Markup:
    """The SVG document of ``g`` (``title`` names it for screen readers)."""
    rows = max((len(c) for c in g.columns), default=0) or 1
    width = LEFT * 2 + 4 * BOX_W + 3 * GAP_X
    height = TOP + rows * (BOX_H + GAP_Y) + 10
    where: dict[str, tuple[int, int]] = {}
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="graph" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="graph-title"><title id="graph-title">{escape(title)}</title>'
    ]
    for i, heading in enumerate(COLUMNS):
        x = LEFT + i * (BOX_W + GAP_X)
        parts.append(
            f'<text x="{x}" y="22" font-family="sans-serif" font-size="13" '
            f'font-weight="bold" fill="#1b1f24">{escape(heading)}</text>'
        )
        for j, (key, _label, _health) in enumerate(g.columns[i]):
            where[key] = (x, TOP + j * (BOX_H + GAP_Y))
    for a, b in sorted(g.edges):
        if a in where and b in where:
            (x1, y1), (x2, y2) = where[a], where[b]
            parts.append(
                f'<line x1="{x1 + BOX_W}" y1="{y1 + BOX_H / 2}" x2="{x2}" y2="{y2 + BOX_H / 2}" '
                f'stroke="#8a93a3" stroke-width="1.5"/>'
            )
    for i in range(4):
        for key, label, health in g.columns[i]:
            x, y = where[key]
            fill, stroke = COLOURS.get(health, GREY)
            parts.append(
                f'<g class="node health-{escape(health)}"><title>{escape(label)}: '
                f"{escape(health)}</title>"
                f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" '
                f'stroke="{stroke}" stroke-width="1.5"/>'
                f'<text x="{x + 8}" y="{y + 15}" font-family="sans-serif" font-size="12" '
                f'fill="#1b1f24">{escape(_short(label))}</text>'
                f'<text x="{x + 8}" y="{y + 28}" font-family="sans-serif" font-size="10" '
                f'fill="{stroke}">{escape(health)}</text></g>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text above is escaped)
