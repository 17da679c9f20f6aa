"""report.html: the sweep as one self-contained page (images inlined; opens offline, mails as one file).

- a grid of final images, rows and columns = the swept keys, click to enlarge, each with its
  snapshots as a strip;
- loss curves (inline SVG);
- a sortable table of losses and yardstick scores (the best of each score in bold).
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from nst_exp.engine.judge import JUDGE_KEYS
from nst_exp.reporting.drawing import caption, pretty
from nst_exp.reporting.html_assets import CSS, JS
from nst_exp.reporting.multirun import Grid, Job, term_columns
from nst_exp.reporting.svg import loss_curves_svg

# The yardstick next to final_loss (what people sort by), the run's own terms after it (term_columns).
LEADING = ("final_loss", "judge_loss", "judge_ssim", "judge_color", "judge_content", "judge_style")
TRAILING = ("steps", "stopped_early_at", "train_time_s", "ms_per_step")
HIGHER_IS_BETTER = {"judge_ssim"}
YARDSTICK = JUDGE_KEYS
SNAPSHOT_EDGE, THUMB_EDGE, MAX_SNAPSHOTS = 96, 64, 12


def data_uri(path: Path, max_edge: int | None = None, quality: int = 92) -> str | None:
    """The image as a JPEG ``data:`` URI (optionally shrunk); None if it cannot be read."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if max_edge and max(image.size) > max_edge:
                image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _label(keys: list[str], values: tuple[str | None, ...]) -> str:
    return ", ".join(pretty(k, v) for k, v in zip(keys, values) if v is not None) or "job"


def _snapshots(job: Job) -> str:
    paths = sorted((job.dir / "snapshots").glob("step_*.png"))
    stride = max(1, math.ceil(len(paths) / MAX_SNAPSHOTS))
    shown = paths[::stride]
    if paths and shown[-1] != paths[-1]:
        shown.append(paths[-1])
    imgs = []
    for path in shown:
        uri = data_uri(path, SNAPSHOT_EDGE, 80)
        if uri:
            step = path.stem.split("_")[1].lstrip("0") or "0"
            imgs.append(f'<img class="zoomable" src="{uri}" alt="step {step}" '
                        f'data-caption="job {job.num}, step {step}">')
    return f'<div class="strip" title="snapshots">{"".join(imgs)}</div>' if imgs else ""


def _figure(job: Job | None, label: str) -> str:
    """One grid cell: the final image (or why there is none), its caption and its snapshots."""
    if job is None:
        return '<figure class="cell"><div class="empty">not in sweep</div></figure>'
    status, summary = job.status, job.summary or {}
    uri = data_uri(job.image) if job.image and not status.startswith("failed") else None
    text = f"job {job.num}: {caption(job)}"
    judge = [f"{name} {summary[key]:.3g}" for name, key in (("judge", "judge_loss"), ("SSIM", "judge_ssim"))
             if isinstance(summary.get(key), (int, float))]
    text += "".join(f" · {part}" for part in judge)
    image = f'<div class="empty">{escape(status)}</div>'
    if uri:
        image = (f'<img class="final zoomable" src="{uri}" alt="{escape(label)}" '
                 f'data-caption="{escape(label)} — {escape(text)}">')
    kind = "failed" if status.startswith("failed") else ""
    return (f'<figure class="cell">{image}<figcaption class="{kind}">{escape(text)}</figcaption>'
            f"{_snapshots(job)}</figure>")


def grid_html(grid: Grid) -> str:
    """The final images laid out as the sweep was: rows = the first swept key, columns = the rest."""
    head = "".join(f"<th>{escape(_label(grid.column_keys, column))}</th>" for column in grid.columns)
    rows = []
    for row in grid.rows:
        row_label = pretty(grid.row_key, row) if grid.row_key and row is not None else ""
        cells = []
        for column in grid.columns:
            label = ", ".join(filter(None, [row_label, _label(grid.column_keys, column)]))
            cells.append(f"<td>{_figure(grid.cell(row, column), label)}</td>")
        rows.append(f'<tr><th class="row">{escape(row_label)}</th>{"".join(cells)}</tr>')
    return f'<table class="grid"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _best(jobs: list[Job]) -> dict[str, float]:
    """The best value of each yardstick score among finished jobs."""
    best = {}
    for key in YARDSTICK:
        values = [v for job in jobs if isinstance(v := (job.summary or {}).get(key), (int, float))]
        if values:
            best[key] = max(values) if key in HIGHER_IS_BETTER else min(values)
    return best


def _td(key: str, value: Any, best: dict[str, float]) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        marked = ' class="best"' if key in best and value == best[key] else ""
        return f'<td data-key="{key}" data-v="{value!r}"{marked}>{value:.4g}</td>'
    text = escape("" if value is None else str(value))
    return f'<td data-key="{escape(key)}" data-v="{text}" class="text" title="{text}">{text}</td>'


def table_html(grid: Grid) -> str:
    """Every job's swept values, status, losses and yardstick scores; headers sort."""
    keys = [k.lstrip("+~") for k in grid.keys]
    shown = (*LEADING, *term_columns(grid.jobs), *TRAILING)
    figures = [key for key in shown if any((job.summary or {}).get(key) for job in grid.jobs)]  # no all-0/null
    arrows = {key: " ↑" if key in HIGHER_IS_BETTER else " ↓" for key in YARDSTICK}
    head = ['<th data-key="job" data-type="num">job</th>', '<th data-key="status" class="text">status</th>']
    head += [f'<th data-key="{escape(k)}" class="text">{escape(k)}</th>' for k in keys]
    head += [f'<th data-key="{k}" data-type="num">{k}{arrows.get(k, "")}</th>' for k in figures]
    head.append("<th>image</th>")
    best, body = _best(grid.jobs), []
    for job in grid.jobs:
        summary = job.summary or {}
        cells = [_td("job", job.num, {}), _td("status", job.status, {})]
        cells += [_td(k.lstrip("+~"), job.overrides.get(k, ""), {}) for k in grid.keys]
        cells += [_td(k, summary.get(k), best) for k in figures]
        uri = data_uri(job.image, THUMB_EDGE, 85) if job.image and not job.status.startswith("failed") else None
        cells.append(f'<td><img class="zoomable" src="{uri}" alt="job {job.num}"></td>' if uri else "<td></td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="runs" id="runs"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def report_html(grid: Grid, sweep_dir: Path, fixed: str, counts: str) -> str:
    """The whole page; ``fixed``: the overrides every job shares; ``counts``: '3 ok, 1 failed'."""
    title = f"Sweep {sweep_dir.name}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{escape(str(sweep_dir))}</p>
<p class="meta">Fixed overrides: <code>{escape(fixed or "none")}</code> · {len(grid.jobs)} jobs: {escape(counts)}</p>
<h2>Final images</h2>
<p class="meta">Click an image to enlarge it; the strip under it holds the snapshots.</p>
{grid_html(grid)}
<h2>Loss curves</h2>
{loss_curves_svg(grid)}
<h2>Runs</h2>
<p class="meta">Click a header to sort. Yardstick (the same for every run, nst_exp/engine/judge.py):
↓ lower is better, ↑ higher is better; the best of each in bold.</p>
{table_html(grid)}
<dialog id="zoom"><img alt=""><p></p></dialog>
<script>{JS}</script>
</body></html>
"""
