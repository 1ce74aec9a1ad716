"""Bar charts as SVG markup, drawn on the server: no chart library, no script, and
presentation attributes only (the console's CSP allows no inline style)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD, AXIS = 560, 160, 4, 18


def bar_chart(points: list[tuple[str, int]], colour: str, title: str) -> Markup:
    """One bar per (label, value); labels under every other bar, the maximum on the axis."""
    top = max((v for _, v in points), default=0)
    scale = (HEIGHT - AXIS - PAD) / top if top else 0.0
    slot = (WIDTH - 2 * PAD) / max(len(points), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT - AXIS}" x2="{WIDTH - PAD}" y2="{HEIGHT - AXIS}" stroke="#999"/>',
             f'<text x="{PAD}" y="12" font-size="11" fill="#555">max {top}</text>']
    for i, (label, value) in enumerate(points):
        h = value * scale
        x = PAD + i * slot + slot * 0.15
        y = HEIGHT - AXIS - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{escape(colour)}">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        if i % 2 == 0:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - 4}" font-size="10" text-anchor="middle" '
                         f'fill="#555">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
