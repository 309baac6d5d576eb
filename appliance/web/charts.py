"""Small bar charts as inline SVG, made on the server (no JavaScript library on the phone)."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 320, height: int = 140,
              label_every: int = 1) -> Markup:
    """Bars for ``points`` (label, value), labels under every ``label_every``-th bar."""
    top = max((v for _, v in points), default=0) or 1
    n = max(1, len(points))
    plot_h = height - 30
    slot = width / n
    bar = max(1.0, slot * 0.8)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>',
             f'<text x="0" y="10" font-size="10">{top}</text>',
             f'<line x1="0" y1="{plot_h + 12}" x2="{width}" y2="{plot_h + 12}" stroke="currentColor" stroke-width="0.5"/>']
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = i * slot + (slot - bar) / 2
        parts.append(f'<rect x="{x:.1f}" y="{plot_h + 12 - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="#1b6b45">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 4}" font-size="9">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
