"""Make the README's "Artistic controls" contact sheet: one run per control, bundled weights.

    python scripts/controls_sheet.py                      # -> docs/images/controls.jpg
    python scripts/controls_sheet.py --jobs 2 --threads 1
    python scripts/controls_sheet.py --out DIR --reuse   # redo only the runs that did not end ok

Every cell is ``python -m nst_exp.train <its overrides>`` (Tübingen, default settings otherwise);
the runs go side by side (one thread each) under ``--out``, then the sheet is drawn.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw

from nst_exp import DATA_DIR
from nst_exp.core.files import atomic_path, read_if_complete

IMAGES = DATA_DIR / "images"
TWO_STYLES = f"pair.style=[{IMAGES}/style/starry_night.jpg,{IMAGES}/style/the_scream.jpg]"
MASKS = f"pair.masks=[{IMAGES}/masks/tubingen_sky.png,{IMAGES}/masks/tubingen_town.png]"
# (label, overrides): the README shows the same overrides with ${paths.data_dir} for the paths.
RUNS = [
    ("default (color=none)", []),
    ("color=luminance", ["color=luminance"]),
    ("color=histogram", ["color=histogram"]),
    ("2 styles, style_blend=0.5", [TWO_STYLES, "style_blend=0.5"]),
    ("init=image (Great Wave)", ["init=image", f"init.path={IMAGES}/style/great_wave.jpg"]),
    ("normalize_gradients (Adam)", ["loss.normalize_gradients=true", "optimizer=adam", "style_weight=10"]),
    ("masks: sky / town", [TWO_STYLES, MASKS]),
]
INPUTS = [("content", IMAGES / "content/tubingen.jpg"), ("style 1", IMAGES / "style/starry_night.jpg"),
          ("style 2", IMAGES / "style/the_scream.jpg"), ("mask 1 (mask 2 = rest)", IMAGES / "masks/tubingen_sky.png")]


def run(label: str, overrides: list[str], args: argparse.Namespace) -> Path:
    """One control's run (kept if ``--reuse`` and it finished ``ok``); returns its final.png.

    A run that did not end ``ok`` (diverged, failed) stops the sheet: its final.png is not
    what the control does.
    """
    out = args.out / re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    if args.reuse and _status(out) == "ok":
        return out / "final.png"
    command = [sys.executable, "-m", "nst_exp.train", f"image_size={args.size}", f"steps={args.steps}",
               "trainer=cpu", "logger=none", "snapshot_every=0", "checkpoint_every=0", "resume=false",
               f"hydra.run.dir={out}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{label}: failed\n{result.stderr[-2000:]}")
    if _status(out) != "ok":
        raise SystemExit(f"{label}: the run ended {_status(out)!r}, not ok (see {out / 'summary.json'})")
    print(f"{label}: {out / 'final.png'}", flush=True)
    return out / "final.png"


def _status(run_dir: Path) -> str | None:
    summary = read_if_complete(run_dir / "summary.json")
    return summary.get("status") if isinstance(summary, dict) else None


def sheet(cells: list[tuple[str, Path]], cell: int, columns: int = 4) -> Image.Image:
    """Cells of ``cell`` px long edge with a caption under each."""
    rows = -(-len(cells) // columns)
    height = round(cell * 0.75) + 16
    canvas = Image.new("RGB", (columns * (cell + 4), rows * (height + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, path) in enumerate(cells):
        image = Image.open(path).convert("RGB")
        image.thumbnail((cell, round(cell * 0.75)), Image.Resampling.LANCZOS)
        x, y = (index % columns) * (cell + 4) + 2, (index // columns) * (height + 4) + 2
        canvas.paste(image, (x + (cell - image.width) // 2, y))
        draw.text((x + 2, y + height - 14), label, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image_size of every run (long edge, px)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=len(RUNS), help="runs side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", type=Path, default=Path("outputs/controls"))
    parser.add_argument("--sheet", type=Path, default=Path("docs/images/controls.jpg"))
    parser.add_argument("--reuse", action="store_true", help="keep runs under --out that finished ok")
    args = parser.parse_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        finals = list(pool.map(lambda item: run(*item, args), RUNS))
    cells = [*INPUTS, *((label, final) for (label, _), final in zip(RUNS, finals))]
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.sheet) as tmp:
        sheet(cells, cell=max(160, args.size)).save(tmp, format="JPEG", quality=88, optimize=True)
    print(f"sheet: {args.sheet} ({args.sheet.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
