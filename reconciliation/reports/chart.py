"""A bar chart as inline SVG, drawn on the server (the finance page needs no JavaScript).

Heights are computed in integer arithmetic from fen; labels are escaped. Each bar has a
``<title>`` (a tooltip with the exact amount) and the chart has an accessible name.
"""

from __future__ import annotations

from html import escape

from clearing.money import format_fen

WIDTH, HEIGHT = 720, 240
TOP, BOTTOM, LEFT, RIGHT = 16, 40, 64, 8


def _nice_ceiling(fen: int) -> int:
    """The smallest 1, 2 or 5 x 10^n yuan (in fen) at or above ``fen`` (at least 1 yuan)."""
    step = 100
    while True:
        for m in (1, 2, 5):
            if fen <= m * step:
                return m * step
        step *= 10


def bar_chart_svg(points: list[tuple[str, int]], *, title: str) -> str:
    """SVG markup of one bar per ``(label, fen)``; the y axis in yuan from 0 to a round top."""
    top = _nice_ceiling(max([fen for _, fen in points] + [0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w // max(len(points), 1)
    bar_w = max(4, slot * 2 // 3)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # grid lines and y labels at 0, 1/4 .. top
        value = top * i // 4
        y = TOP + plot_h - plot_h * i // 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{escape(format_fen(value))}</text>'
        )
    for i, (label, fen) in enumerate(points):
        h = plot_h * fen // top
        x = LEFT + i * slot + (slot - bar_w) // 2
        y = TOP + plot_h - h
        tip = f"{label}: {format_fen(fen)}"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{bar_w}" height="{h}" fill="#17407d">'
            f"<title>{escape(tip)}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w // 2}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle" font-size="11" fill="#57606a">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
