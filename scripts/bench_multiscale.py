"""Coarse-to-fine against one 512 px L-BFGS run of the default length: time and the impartial yardstick.

    python scripts/benchmark.py --multiscale          # the default candidates, one session
    python scripts/bench_multiscale.py --candidates "128,256,512:200,80,15" "256,512:100,20 scale_detail=1"

Every run is a real job (``python -m nst_exp.train``) started from this process, one after the
other and interleaved (candidate, baseline, candidate, ...), so the machine's load is shared
alike; each run's wall time and CPU time (user + system of the job's process tree) are
recorded. Each final.png is scored by the project's yardstick (summary.json's ``judge_*``,
nst_exp/core/yardstick.py): one network, one scale, the original photo and painting, a style
measure no run optimises. Not by the runs' own Gram objective: the 512 px baseline optimises
exactly that, so it would be judged by its own settings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SIZE = 512  # the size; --size measures another
CANDIDATES = ("256,512:60,30 scale_detail=1", "128,256,512:100,40,25 scale_detail=1")  # c1, c2 in docs/performance.md
COMMON = ["logger=none", "snapshot_every=0", "seed=0"]
JUDGE = ("judge_loss", "judge_content", "judge_style", "judge_ssim", "judge_color")  # summary.json's yardstick


def baseline_overrides(size: int) -> list[str]:
    """The default optimiser and length, single-scale at ``size``."""
    return ["optimizer=lbfgs", f"image_size={size}", "steps=150"]


def candidate_overrides(spec: str) -> list[str]:
    """``"128,256,512:200,80,15 scale_detail=1"`` -> the overrides of an L-BFGS coarse-to-fine
    run: scales, steps per scale, then any further overrides."""
    first, *extra = spec.split()
    scales, steps = first.split(":")
    return ["optimizer=lbfgs", f"scales=[{scales}]", f"steps_per_scale=[{steps}]", *extra]


def run_job(overrides: list[str], job_dir: Path, threads: int) -> dict:
    """One job in a child process; its summary plus wall and CPU seconds and the load around it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    before, load = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nst_exp.train", *COMMON, *overrides, f"hydra.run.dir={job_dir}"],
                          capture_output=True, text=True, env=env, cwd=job_dir.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"job {overrides} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((job_dir / "summary.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"overrides": overrides, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "image": str(job_dir / "final.png"), "steps": summary["steps"], "final_loss": summary["final_loss"],
            "judge": {key.removeprefix("judge_"): summary[key] for key in JUDGE}}


def side_by_side(paths: list[str], out: Path, height: int = 288) -> None:
    """The images next to each other, JPEG (docs/images)."""
    tiles = [Image.open(p).convert("RGB") for p in paths]
    tiles = [t.resize((round(t.width * height / t.height), height), Image.Resampling.LANCZOS) for t in tiles]
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), height), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=88)


def multiscale(candidates: list[str], threads: int, work: Path, sheet: Path | None = None, size: int = SIZE) -> dict:
    """Interleave the candidates around one baseline; ratios and yardstick scores for each."""
    order = [("candidate", candidates[0]), ("baseline", None)] + [("candidate", c) for c in candidates[1:]]
    runs = []
    for index, (kind, spec) in enumerate(order):
        overrides = baseline_overrides(size) if spec is None else candidate_overrides(spec)
        print(f"  {kind:9s} {spec or f'lbfgs {size} px x 150'} ...", flush=True)
        runs.append({"kind": kind, "spec": spec, **run_job(overrides, work / f"run{index}", threads)})
    base = next(r for r in runs if r["kind"] == "baseline")
    for run in runs:
        run["x_wall"] = round(run["wall_s"] / base["wall_s"], 3)
        run["x_cpu"] = round(run["cpu_s"] / base["cpu_s"], 3)
        run["meets_target"] = run["x_wall"] <= 0.35 and run["judge"]["loss"] <= base["judge"]["loss"]
        judge = run["judge"]
        print(f"{run['kind']:9s} {run['spec'] or 'baseline':24s} wall {run['wall_s']:7.1f} s ({run['x_wall']:.3f}x) "
              f"cpu {run['cpu_s']:7.1f} s ({run['x_cpu']:.3f}x) judge {judge['loss']:.4g} "
              f"(content {judge['content']:.4g}, style {judge['style']:.4g}) "
              f"load {run['load_before']:.1f}-{run['load_after']:.1f}"
              f"{'  TARGET MET' if run['meets_target'] and run['kind'] == 'candidate' else ''}")
    if sheet is not None:
        best = min((r for r in runs if r["kind"] == "candidate"), key=lambda r: r["judge"]["loss"])
        side_by_side([base["image"], best["image"]], sheet)
    return {"size": size, "threads": threads, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help="scales:steps_per_scale each")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=SIZE,
                        help="long edge of the single-scale baseline (candidates name their own scales)")
    parser.add_argument("--sheet", default="", help="write baseline | best candidate here (JPEG)")
    parser.add_argument("--work", default="", help="keep the job dirs here (default: a temp dir)")
    parser.add_argument("--out", default="benchmark.json")
    args = parser.parse_args()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    sheet = Path(args.sheet).resolve() if args.sheet else None
    with tempfile.TemporaryDirectory(prefix="nst-multiscale-") as temp:
        work = Path(args.work or temp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        report["multiscale"] = multiscale(args.candidates, args.threads, work, sheet, args.size)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
