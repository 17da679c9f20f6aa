"""Turn a multirun directory into report.html, report.csv, contact_sheet.png, losses*.png and report.md.

Only files on disk are read (no W&B), so it works offline, on a copied directory, and on a
sweep that is still running: unfinished jobs show as labelled empty cells and status rows.

    nst-report outputs/multirun/2026-11-23/15-30-00_123456
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nst_exp.core.files import write_text
from nst_exp.core.images import save_image
from nst_exp.errors import ReportError
from nst_exp.reporting.drawing import contact_sheet, loss_plot
from nst_exp.reporting.html import YARDSTICK, report_html
from nst_exp.reporting.multirun import Grid, Job, common_overrides, grid_of, load_jobs, term_columns

RUN_COLUMNS = ("steps", "stopped_early_at", "wall_time_s", "train_time_s", "ms_per_step")
OUTPUTS = ("report.html", "report.csv", "contact_sheet.png", "losses.png", "losses_evals.png", "losses_time.png",
           "report.md")
# The loss curves: per step, per evaluation and per second (steps of L-BFGS and Adam differ in cost).
LOSS_PLOTS = {"losses.png": "step", "losses_evals.png": "evals", "losses_time.png": "wall_time_s"}



def rows(grid: Grid, sweep_dir: Path) -> list[dict[str, object]]:
    """One row per job: number, status, swept values, every override, summary figures, image."""
    table, terms = [], term_columns(grid.jobs)
    for job in grid.jobs:
        summary = job.summary or {}
        row: dict[str, object] = {"job": job.num, "status": job.status}
        row.update({key.lstrip("+~"): job.overrides.get(key, "") for key in grid.keys})
        row["overrides"] = " ".join(f"{k}={v}" for k, v in job.overrides.items())
        row.update({key: summary.get(key, "") for key in ("final_loss", *terms, *YARDSTICK, *RUN_COLUMNS)})
        row["image"] = str(job.image.relative_to(sweep_dir)) if job.image else ""
        table.append(row)
    return table


def to_csv(table: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]) if table else ["job", "status"])
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def status_counts(table: list[dict[str, object]]) -> str:
    """``2 ok, 1 failed``: jobs per status (a failure's reason left out)."""
    counts: dict[str, int] = {}
    for row in table:
        key = str(row["status"]).split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def to_markdown(table: list[dict[str, object]], grid: Grid, sweep_dir: Path, fixed: str) -> str:
    """report.md: counts, the layout, both pictures and the table; ``fixed``: the shared overrides."""
    counts = status_counts(table)
    layout = ("rows: `{}`, columns: `{}`".format(grid.row_key, "`, `".join(grid.column_keys)) if grid.row_key
              else "columns: `{}`".format("`, `".join(grid.column_keys)) if grid.keys else "a single job")
    shown = ("job", "status", *[k.lstrip("+~") for k in grid.keys], "final_loss", *term_columns(grid.jobs),
             "judge_loss", "judge_ssim", "judge_color", "steps", "stopped_early_at", "train_time_s", "image")
    lines = [
        f"# Sweep report: `{sweep_dir.name}`",
        "",
        f"Fixed overrides: `{fixed or 'none'}`.",
        "",
        f"{len(table)} jobs: {counts}.",
        f"Contact sheet {layout}. Full table: [report.csv](report.csv); images, curves and a sortable "
        "table in one page: [report.html](report.html).",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
        "![loss curves](losses.png)",
        "",
        "Against the cost of getting there: evaluations (L-BFGS pays several per step) and wall time.",
        "",
        "![loss per evaluation](losses_evals.png) ![loss per second](losses_time.png)",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for row in table:
        cells = [_cell(row.get(key, "")) for key in shown]
        if row.get("image"):
            cells[-1] = f"[final.png]({row['image']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: str | Path) -> dict[str, Path]:
    """Write the report files (``OUTPUTS``) into ``sweep_dir``; returns their paths by name."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"sweep dir {str(sweep_dir)!r} is not a directory")
    jobs: list[Job] = load_jobs(sweep_dir)
    if not jobs:
        raise ReportError(f"sweep dir {str(sweep_dir)!r} has no multirun.yaml and no job directories")
    grid = grid_of(jobs)
    table = rows(grid, sweep_dir)
    paths = {name: sweep_dir / name for name in OUTPUTS}
    write_text(paths["report.csv"], to_csv(table))
    fixed = " ".join(f"{k}={v}" for k, v in common_overrides(jobs).items())
    save_image(contact_sheet(grid, title=f"{sweep_dir.name}: {fixed}".rstrip(": ")), paths["contact_sheet.png"])
    for name, x in LOSS_PLOTS.items():
        save_image(loss_plot(grid, x=x), paths[name])
    write_text(paths["report.md"], to_markdown(table, grid, sweep_dir, fixed))
    write_text(paths["report.html"], report_html(grid, sweep_dir, fixed, status_counts(table)))
    return paths
