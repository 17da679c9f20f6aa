"""Loss curves as inline SVG for report.html: sharp at any zoom, no files, no plotting stack.

Total loss against the step, log-scale y, one colour per job (the palette of the PNG plot);
hovering a curve names its job. Long runs are thinned to ``MAX_POINTS`` per curve.
"""

from __future__ import annotations

import math
from html import escape

from nst_exp.reporting.drawing import PALETTE, job_label
from nst_exp.reporting.multirun import Grid, Job

WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 40
MAX_POINTS = 400


def _points(job: Job) -> list[tuple[float, float]]:
    rows = [(r["step"], r["loss"]) for r in job.metrics()
            if "step" in r and math.isfinite(r.get("loss", math.nan)) and r.get("loss", 0) > 0]
    stride = max(1, math.ceil(len(rows) / MAX_POINTS))
    return rows[::stride] + ([rows[-1]] if rows and (len(rows) - 1) % stride else [])


def loss_curves_svg(grid: Grid) -> str:
    """An ``<svg>`` element with every job's total-loss curve, or a note if none has metrics."""
    curves = [(i, job, points) for i, job in enumerate(grid.jobs) if (points := _points(job))]
    if not curves:
        return '<p class="note">No metrics.csv yet.</p>'
    max_step = max(s for _, _, points in curves for s, _ in points) or 1
    values = [v for _, _, points in curves for _, v in points]
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    high = max(high, low + 1)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def x(step: float) -> float:
        return x0 + step / max_step * (x1 - x0)

    def y(value: float) -> float:
        return y1 - (math.log10(value) - low) / (high - low) * (y1 - y0)

    parts = [f'<svg class="curves" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="total loss per job against the step, log scale">',
             f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="frame"/>']
    for decade in range(low, high + 1):
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y(10.0**decade):.1f}" y2="{y(10.0**decade):.1f}" class="grid"/>'
                     f'<text x="{x0 - 6}" y="{y(10.0**decade):.1f}" class="ytick">1e{decade}</text>')
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        step = round(max_step * fraction)
        parts.append(f'<text x="{x(step):.1f}" y="{y1 + 16}" class="xtick">{step}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 4}" class="xtick">step</text>')
    for index, job, points in curves:
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in (points if len(points) > 1 else points * 2))
        parts.append(f'<polyline points="{path}" stroke="{colour}" data-job="{job.num}" class="curve">'
                     f"<title>{escape(job_label(job, grid.keys))}</title></polyline>")
    parts.append("</svg>")
    legend = "".join(f'<li data-job="{job.num}"><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}">'
                     f"</span>{escape(job_label(job, grid.keys))}</li>" for i, job, _ in curves)
    return "".join(parts) + f'<ul class="legend">{legend}</ul>'
