"""Charts as inline SVG made on the server: no script, no style attribute (the CSP allows
neither), only shapes with fill colours and text — readable printed, too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#a3201b", "#d9822b", "#6b4fa3", "#2b6cb0", "#b83280", "#4a5568", "#2f855a")


def stacked_bars(labels: Sequence[str], series: Mapping[str, Sequence[int]], *, title: str,
                 width: int = 900, height: int = 260) -> Markup:
    """One bar per label, one coloured part per series, a legend and a y scale."""
    left, bottom, top, right = 40, 40, 30, 10
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(v[i] for v in series.values()) for i in range(len(labels))]
    peak = max([*totals, 1])
    step = plot_w / max(len(labels), 1)
    bar = max(min(step * 0.7, 40), 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" class="chart"><title>{escape(title)}</title>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
             'stroke="#888"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    for i, label in enumerate(labels):
        x = left + i * step + (step - bar) / 2
        y: float = top + plot_h
        for k, (name, values) in enumerate(series.items()):
            h = plot_h * values[i] / peak
            if h:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)} '
                             f'{escape(name)}: {values[i]}</title></rect>')
        every = -(-len(labels) * 44 // plot_w)  # a label needs ~44 px
        if i % max(every, 1) == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                         f'font-size="10">{escape(label[-5:])}</text>')
    lx = left
    for k, name in enumerate(series):
        parts.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                     f'<text x="{lx + 14}" y="15" font-size="11">{escape(name)}</text>')
        lx += 24 + 8 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part above is escaped
