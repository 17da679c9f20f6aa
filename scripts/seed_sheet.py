"""One contact sheet for the four seed presets: content, style, then each preset's final.png.

    python scripts/seed_sheet.py RUN_DIR [RUN_DIR ...] --out docs/images/seed_presets.png

Each RUN_DIR is a single run (``python -m nst_exp.train experiment=d2l hydra.run.dir=RUN_DIR``);
its label is read from the run's own files: the preset (tags in .hydra/config.yaml), size,
steps done (of how many, if it was interrupted) and whether its stop test ended it. The pair
is the first run's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from nst_exp.core.files import atomic_path
from nst_exp.reporting.drawing import BACKGROUND, INK, PAD, fit, font
from nst_exp.runtime.resolvers import register_resolvers

CELL = 224


def run_label(run: Path) -> tuple[str, str]:
    """(preset name, 'W x H px, N steps [stopped]') from a run directory."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    summary = json.loads((run / "summary.json").read_text())
    name = next((t for t in cfg.tags if t != "preset"), run.name)
    h, w = summary["image_size"]
    stop = " (stop test)" if summary.get("stopped_early_at") else ""
    of = f" of {cfg.steps}" if summary["steps"] < cfg.steps and not stop else ""
    return str(name), f"{w}x{h} px, {summary['steps']}{of} steps{stop}"


def sheet(runs: list[Path]) -> Image.Image:
    """A row of tiles: content, style, one final.png per run, each with two caption lines."""
    cfg = OmegaConf.load(runs[0] / ".hydra" / "config.yaml")
    tiles = [(Image.open(cfg.pair.content).convert("RGB"), ("content", Path(cfg.pair.content).name)),
             (Image.open(cfg.pair.style).convert("RGB"), ("style", Path(cfg.pair.style).name))]
    tiles += [(Image.open(run / "final.png").convert("RGB"), run_label(run)) for run in runs]
    face, caption = font(15), 2 * 19
    out = Image.new("RGB", (PAD + len(tiles) * (CELL + PAD), 2 * PAD + CELL + caption), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for index, (image, (title, detail)) in enumerate(tiles):
        x = PAD + index * (CELL + PAD)
        tile = fit(image, (CELL, CELL))
        out.paste(tile, (x + (CELL - tile.width) // 2, PAD + (CELL - tile.height) // 2))
        draw.text((x, PAD + CELL + 2), title, fill=INK, font=face)
        draw.text((x, PAD + CELL + 21), detail, fill=INK, font=font(12))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/images/seed_presets.png"))
    args = parser.parse_args()
    register_resolvers()  # the runs' configs name the shipped images through ${nst_data_dir:}
    image = sheet(args.runs)
    with atomic_path(args.out) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    print(f"{args.out}: {image.width}x{image.height}, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
