"""Pictures of a sweep drawn with Pillow alone: the contact sheet and the log-scale loss plot.

No matplotlib: two simple figures do not justify a plotting stack in every install, and
Pillow is already a dependency (its default font is bundled, so this works offline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont

from nst_exp.reporting.multirun import Grid, Job

CELL = 256            # long edge of a result in the sheet, px
PAD = 8
LABEL_WIDTH = 170     # the row-label column
BACKGROUND, INK, EMPTY = (255, 255, 255), (20, 20, 20), (225, 225, 225)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def font(size: int = 14) -> Font:
    """Pillow's bundled font, scalable where FreeType is available."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def wrap(text: str, width: int, face: Font) -> list[str]:
    """Greedy wrap at ',', ' ' and '=' so long list values stay inside ``width`` px."""
    lines, current = [], ""
    token = ""
    for char in text + "\0":
        token += char if char != "\0" else ""
        if char in ", =\0":
            if current and face.getlength(current + token) > width:
                lines.append(current.rstrip())
                current = ""
            while face.getlength(token) > width and len(token) > 1:  # one token wider than the box
                cut = max(1, int(len(token) * width / face.getlength(token)) - 1)
                lines.append(token[:cut])
                token = token[cut:]
            current += token
            token = ""
    return [line for line in lines + [current.rstrip()] if line] or [""]


def pretty(key: str, value: str) -> str:
    """``style_weight=1000000.0`` -> ``style_weight=1e+06``: labels read like the command line."""
    try:
        number = float(value)
    except ValueError:
        return f"{key.lstrip('+~')}={value}"
    return f"{key.lstrip('+~')}={number:g}"


def job_label(job: Job, keys: list[str]) -> str:
    """Legend entry: job number and its swept values."""
    return f"{job.num}: " + (", ".join(pretty(k, job.overrides.get(k, "?")) for k in keys) or "job")


def fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``image`` scaled to fit inside ``box`` (w, h), aspect kept."""
    scale = min(box[0] / image.width, box[1] / image.height)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def pair_paths(job: Job) -> tuple[str | None, str | None]:
    """The job's content and style image paths, resolved from its saved config."""
    try:
        cfg = OmegaConf.create(job.config)
        return OmegaConf.select(cfg, "pair.content"), OmegaConf.select(cfg, "pair.style")
    except Exception:  # an unresolvable or partial config: no thumbnails, never no sheet
        return None, None


def _only(values: set[str | None]) -> str | None:
    return next(iter(values)) if len(values) == 1 else None


def _open(path: str | Path | None) -> Image.Image | None:
    try:
        return Image.open(path).convert("RGB") if path else None
    except OSError:
        return None


def cell_box(grid: Grid) -> tuple[int, int]:
    """(w, h) of every cell: CELL on the long edge of the first finished image."""
    first = next((_open(job.image) for job in grid.jobs if job.image), None)
    if first is None:
        return CELL, CELL
    scale = CELL / max(first.size)
    return round(first.width * scale), round(first.height * scale)


def caption(job: Job | None) -> str:
    """One line under a cell: the final loss, or why there is no image."""
    if job is None:
        return "not in sweep"
    if job.status != "ok":
        return job.status
    loss = (job.summary or {}).get("final_loss")
    stopped = (job.summary or {}).get("stopped_early_at")
    text = f"loss {loss:.3g}" if isinstance(loss, (int, float)) else "loss n/a"
    return text + (f", stopped at {stopped}" if stopped else "")


def _draw_cell(sheet: Image.Image, job: Job | None, xy: tuple[int, int], box: tuple[int, int],
               face: Font, corner_style: bool) -> None:
    draw = ImageDraw.Draw(sheet)
    x, y = xy
    shown = job is not None and not job.status.startswith("failed")  # a failed run's image may be NaN junk
    image = _open(job.image) if shown else None
    if image is None:  # failed, running or missing: a labelled empty cell
        draw.rectangle([x, y, x + box[0] - 1, y + box[1] - 1], fill=EMPTY)
        text = "\n".join(wrap(caption(job), box[0] - 2 * PAD, face))
        draw.multiline_text((x + box[0] // 2, y + box[1] // 2), text, fill=INK, font=face, anchor="mm",
                            align="center")
    else:
        image = fit(image, box)
        sheet.paste(image, (x + (box[0] - image.width) // 2, y + (box[1] - image.height) // 2))
        style = _open(pair_paths(job)[1]) if corner_style else None
        if style is not None:  # the pair varies across the sheet: show each cell's painting
            thumb = fit(style, (box[0] // 4, box[1] // 4))
            tx, ty = x + box[0] - thumb.width - 4, y + box[1] - thumb.height - 4
            draw.rectangle([tx - 2, ty - 2, tx + thumb.width + 1, ty + thumb.height + 1], fill=BACKGROUND)
            sheet.paste(thumb, (tx, ty))
    line = wrap(caption(job), box[0], face)[0] if image is not None else ""
    draw.text((x, y + box[1] + 2), line, fill=INK, font=face)


@dataclass(frozen=True)
class Layout:
    """Where things go on a contact sheet, in px."""

    box: tuple[int, int]
    title_h: int
    corner_h: int
    cell_h: int
    line_h: int

    def cell_xy(self, row: int, column: int) -> tuple[int, int]:
        """Top-left corner of the image area of cell (row, column)."""
        return LABEL_WIDTH + PAD + column * (self.box[0] + PAD), self.title_h + self.corner_h + row * self.cell_h


def layout(grid: Grid, col_labels: list[list[str]], face: Font, title: bool) -> Layout:
    box = cell_box(grid)
    line_h = int(face.getbbox("Ag")[3]) + 4
    header_h = max(len(lines) for lines in col_labels) * line_h + PAD
    return Layout(box=box, title_h=line_h + PAD if title else 0, corner_h=max(header_h, box[1] // 2 + PAD),
                  cell_h=box[1] + line_h + PAD, line_h=line_h)


def column_labels(grid: Grid, width: int, face: Font) -> list[list[str]]:
    return [wrap(", ".join(pretty(k, v) for k, v in zip(grid.column_keys, combo)) or "job", width, face)
            for combo in grid.columns]


def contact_sheet(grid: Grid, title: str = "") -> Image.Image:
    """Results laid out by the swept keys, labelled, with the content and style in the corner."""
    face, small = font(15), font(13)
    rows, columns = grid.rows, grid.columns
    col_labels = column_labels(grid, cell_box(grid)[0], face)
    at = layout(grid, col_labels, face, bool(title))
    width = LABEL_WIDTH + PAD + len(columns) * (at.box[0] + PAD)
    sheet = Image.new("RGB", (width, at.title_h + at.corner_h + len(rows) * at.cell_h + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD // 2), title, fill=INK, font=face)
    paths = [pair_paths(job) for job in grid.jobs if job.config]
    shared = [_only({p[i] for p in paths}) for i in (0, 1)]  # (content, style) if every job has the same
    for i, (path, name) in enumerate(zip(shared, ("content", "style"))):  # shared images once, top left
        image = _open(path)
        if image is not None:
            thumb = fit(image, ((LABEL_WIDTH - PAD) // 2, at.corner_h - at.line_h))
            sheet.paste(thumb, (PAD // 2 + i * LABEL_WIDTH // 2, at.title_h))
            draw.text((PAD // 2 + i * LABEL_WIDTH // 2, at.title_h + thumb.height + 1), name, fill=INK, font=small)
    for c, lines in enumerate(col_labels):
        x, _ = at.cell_xy(0, c)
        draw.multiline_text((x, at.title_h + at.corner_h - len(lines) * at.line_h - PAD // 2), "\n".join(lines),
                            fill=INK, font=face)
    for r, row in enumerate(rows):
        if row is not None:
            label = wrap(pretty(grid.row_key, row), LABEL_WIDTH - PAD, face)
            y = at.cell_xy(r, 0)[1] + at.box[1] // 2
            draw.multiline_text((PAD // 2, y), "\n".join(label), fill=INK, font=face, anchor="lm")
        for c, combo in enumerate(columns):
            _draw_cell(sheet, grid.cell(row, combo), at.cell_xy(r, c), at.box, small,
                       corner_style=bool(paths) and shared[1] is None)
    return sheet


def _decades(values: list[float]) -> tuple[int, int]:
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return low, max(high, low + 1)


# metrics.csv column -> x-axis label of a loss plot (evals and wall time: fair optimiser comparisons)
LOSS_AXES = {"step": "step", "evals": "loss + gradient evaluations", "wall_time_s": "wall time (s)"}


def loss_plot(grid: Grid, size: tuple[int, int] = (960, 540), x: str = "step") -> Image.Image:
    """Total loss of every job against ``x`` (a metrics.csv column), log-scale y, one colour per job."""
    face = font(14)
    width, height = size
    left, right, top, bottom = 70, 300, 36, 46
    plot = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(plot)
    curves = [(job, [(r[x], r["loss"]) for r in job.metrics() if r.get("loss", 0) > 0
                     and math.isfinite(r["loss"]) and x in r]) for job in grid.jobs]
    curves = [(job, points) for job, points in curves if points]
    draw.text((left, 10), f"total loss per job (log scale) against {LOSS_AXES[x]}", fill=INK, font=face)
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    draw.rectangle([x0, y0, x1, y1], outline=INK)
    if not curves:
        draw.text(((x0 + x1) // 2, (y0 + y1) // 2), f"no {x} in metrics.csv yet", fill=INK, font=face, anchor="mm")
        return plot
    max_x = max(max(s for s, _ in points) for _, points in curves) or 1
    low, high = _decades([v for _, points in curves for _, v in points])

    def to_xy(at: float, value: float) -> tuple[float, float]:
        fx = at / max_x
        fy = (math.log10(value) - low) / (high - low)
        return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)

    for decade in range(low, high + 1):
        y = to_xy(0, 10.0 ** decade)[1]
        draw.line([x0, y, x1, y], fill=EMPTY)
        draw.text((x0 - 6, y), f"1e{decade}", fill=INK, font=face, anchor="rm")
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        tick = max_x * fraction
        text = str(round(tick)) if max_x >= 20 else f"{tick:.3g}"
        draw.text((to_xy(tick, 10.0 ** low)[0], y1 + 6), text, fill=INK, font=face, anchor="mt")
    draw.text(((x0 + x1) // 2, height - 18), LOSS_AXES[x], fill=INK, font=face, anchor="mt")
    for i, (job, points) in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        xy = [to_xy(s, v) for s, v in points]
        draw.line(xy if len(xy) > 1 else xy * 2, fill=colour, width=2)
        label = wrap(job_label(job, grid.keys), right - 40, face)[0]
        legend_y = top + i * 20
        draw.line([x1 + 12, legend_y + 8, x1 + 30, legend_y + 8], fill=colour, width=3)
        draw.text((x1 + 36, legend_y), label, fill=INK, font=face)
    return plot
