"""Everything the project wants to know from a GPU, in one command of at most 8 minutes.

    python scripts/gpu_check.py --out gpu_check/      # on a GPU machine: gpu_check.json + gpu_check.md
    python scripts/gpu_check.py --dry-run --out DIR   # the same code paths, tiny, on the CPU (a test runs it)

Sections (each in its own try, with its own time budget; the JSON is rewritten after every
measured row, so a run killed half-way still leaves what it measured):

- ``speed``: ms/step of the real path (nst-exp) for Adam and L-BFGS at 512 and 1024 px in fp32,
  TF32, TF32 + channels_last, bf16 + channels_last (Adam), and with ``compile=true``.
- ``first_step``: the first loss on CUDA (fp32, and TF32 as torch's default convolutions run)
  against the CPU's, relative difference (goal <= 1e-3).
- ``overhead``: nst-exp (default callbacks, W&B offline) against a hand-written loop on the same
  device at 32 and 512 px: the fixed per-step cost (goal: <= 1.05x at 512 px).
- ``lbfgs_500``: ``image_size=512 steps=500`` with L-BFGS, wall time and peak GPU memory
  (jcjohnson/neural-style: 22-44 s on a Titan X; goal < 8 s).
- ``batched_sweep``: 8 style weights through ``hydra/launcher=batched`` against the same sweep
  run one job after another (goal >= 3x).
- ``joblib``: two sweep jobs sharing one GPU through ``hydra/launcher=joblib`` against the
  same two one after another.
- ``gpu_tests``: the tests that skip without a GPU (``pytest -m gpu``: no sync in an Adam step,
  a tiled run's tiles on the GPU); the dry run collects them, and they skip.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import fixed_cost, interleaved_best, run_worker, steady_ms, sync_at  # noqa: E402
from gpu_check_plan import Budget, Plan, make_plan, run_cli, summaries  # noqa: E402
from gpu_check_report import render_markdown  # noqa: E402

from nst_exp.core.files import atomic_path, write_json  # noqa: E402

Section = Callable[[Plan, Budget, dict, Callable[[], None]], None]
# name -> (what the row varies, spec fields): TF32 None = torch's default (TF32 convolutions)
MODES = {
    "fp32": {"tf32": False, "overrides": ["channels_last=false"]},
    "tf32": {"tf32": True, "overrides": ["channels_last=false"]},
    "tf32+nhwc": {"tf32": True, "overrides": ["channels_last=true"]},
    "bf16+nhwc": {"tf32": True, "overrides": ["channels_last=true"], "precision": "bf16-mixed"},
    "compile": {"tf32": True, "overrides": ["channels_last=true", "compile=true"]},
}


def worker_spec(plan: Plan, optimizer: str, size: int, steps: int, **extra: object) -> dict:
    """A bench_workers spec on the plan's device; the steady-state window's ends synchronised."""
    spec = {"variant": "nst-exp", "optimizer": optimizer, "size": size, "steps": plan.warmup + steps,
            "weights": plan.weights, "threads": plan.threads, "device": plan.device,
            "sync_at": sync_at(plan.warmup, steps), **extra}
    spec["overrides"] = [*plan.device_overrides, *spec.get("overrides", [])]
    return spec


def first_step(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None], speed_rows: list[dict]) -> None:
    """First loss on the CPU against the device's (fp32, then TF32): relative differences.

    The device's first losses come from the speed section's Adam rows at the first size (a
    first loss is measured before any update), so only the CPU run is extra.
    """
    spec = {"variant": "nst-exp", "optimizer": "adam", "size": plan.sizes[0], "steps": 1,
            "weights": plan.weights, "threads": plan.threads}
    cpu = run_worker({**spec, "overrides": ["trainer=cpu", "logger=none"]}, budget.timeout())
    entry.update(size=plan.sizes[0], cpu_loss=cpu["losses"][0])
    for mode in ("fp32", "tf32"):
        row = next((r for r in speed_rows if (r["size"], r["optimizer"], r["mode"]) == (plan.sizes[0], "adam", mode)
                    and "first_loss" in r), None)
        if row is None:  # the speed section did not run (or that row failed): measure it here
            result = run_worker({**spec, "tf32": MODES[mode]["tf32"], "overrides": [*plan.device_overrides,
                                 *MODES[mode]["overrides"], "logger=none"]}, budget.timeout())
            row = {"first_loss": result["losses"][0]}
        entry[f"{mode}_loss"] = row["first_loss"]
        entry[f"{mode}_rel_diff"] = abs(row["first_loss"] - cpu["losses"][0]) / abs(cpu["losses"][0])
        save()
    entry["goal_met"] = entry["fp32_rel_diff"] <= 1e-3


def speed(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """ms/step of the real path per size, optimiser and mode; a failed row is recorded, not fatal.

    Mode by mode, ``compile`` last: its rows pay a compilation each (tens of seconds), so when
    the budget runs out it is they that are skipped.
    """
    rows = entry.setdefault("rows", [])
    for mode, fields in MODES.items():
        for size in plan.sizes:
            for optimizer in ("adam", "lbfgs"):
                if optimizer == "lbfgs" and (fields.get("precision") or mode not in plan.lbfgs_modes):
                    continue  # L-BFGS always runs fp32 (engine/speed.py)
                row: dict = {"size": size, "optimizer": optimizer, "mode": mode}
                rows.append(row)
                if not budget.left():
                    row["skipped"] = "time budget spent"
                    continue
                overrides = [*fields["overrides"], "logger=none", *plan.compile_overrides(mode)]
                spec = worker_spec(plan, optimizer, size, plan.steps, tf32=fields["tf32"], overrides=overrides,
                                   precision=fields.get("precision", "32-true"))
                try:
                    result = run_worker(spec, budget.timeout())
                    row.update(ms_per_step=steady_ms(result, plan.warmup), peak_gpu_mb=result.get("peak_gpu_mb"),
                               first_loss=result["losses"][0],
                               evals_per_step=(result["evals"][-1] - result["evals"][plan.warmup - 1]) / plan.steps)
                except Exception as error:  # one row's failure (say compile) is a finding, not the end
                    row["error"] = str(error)[-1500:]
                save()


def overhead(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """nst-exp as users run it (default callbacks, W&B offline) against the bare loop, same device."""
    rows = entry.setdefault("rows", [])
    for size in plan.overhead_sizes:
        steps = plan.overhead_steps(size)
        specs = {"bare": {**worker_spec(plan, "adam", size, steps), "variant": "bare",
                          "channels_last": plan.device == "cuda"},
                 "nst-exp": worker_spec(plan, "adam", size, steps)}
        best = interleaved_best(specs, plan.repeats, plan.warmup, lambda s: run_worker(s, budget.timeout()))
        rows.append({"size": size, "optimizer": "adam", "timed_steps": steps,
                     **fixed_cost(best["nst-exp"]["ms_per_step"], best["bare"]["ms_per_step"]),
                     "runs_ms": {name: b["runs_ms"] for name, b in best.items()}})
        save()


def lbfgs_500(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """One real run, ``steps=500`` L-BFGS at 512 px: the user's wall time and peak GPU memory."""
    work = plan.work_dir / "lbfgs_500"
    entry["command_s"] = run_cli([f"image_size={plan.lbfgs_size}", f"steps={plan.lbfgs_steps}", "optimizer=lbfgs",
                                  f"model.weights={plan.weights}", *plan.device_overrides,
                                  f"hydra.run.dir={work}"], budget.timeout(), plan.cli_env)
    summary = summaries(work)[0]
    entry.update({key: summary.get(key) for key in ("steps", "train_time_s", "wall_time_s", "ms_per_step",
                                                    "peak_gpu_mb", "final_loss")}, run_status=summary["status"])
    entry.update(size=plan.lbfgs_size, goal_met=summary["status"] == "ok" and summary["train_time_s"] < 8.0)


def sweep(plan: Plan, budget: Budget, name: str, weights: tuple[str, ...], size: int, steps: int,
          launcher: str | None, extra: tuple[str, ...] = ()) -> dict:
    """One ``-m style_weight=...`` sweep (``launcher`` None: Hydra's basic one, a job at a time)."""
    work = plan.work_dir / name
    args = ["-m", f"style_weight={','.join(weights)}", f"image_size={size}", f"steps={steps}", "optimizer=adam",
            f"model.weights={plan.weights}", "logger=csv", *plan.device_overrides, f"hydra.sweep.dir={work}",
            *([f"hydra/launcher={launcher}"] if launcher else []), *extra]
    seconds = run_cli(args, budget.timeout(), plan.cli_env)
    jobs = summaries(work)
    if len(jobs) != len(weights) or any(job["status"] != "ok" for job in jobs):
        raise RuntimeError(f"{name}: {len(jobs)} of {len(weights)} jobs wrote a summary, statuses "
                           f"{[job['status'] for job in jobs]}")
    # A batch's jobs share one optimisation: each reports the batch's train time.
    train_s = (max if launcher == "batched" else sum)(job["train_time_s"] for job in jobs)
    return {"command_s": seconds, "jobs": len(jobs), "train_s": train_s,
            "ms_per_step": [job["ms_per_step"] for job in jobs], "peak_gpu_mb": max_or_none(jobs, "peak_gpu_mb"),
            "precision": jobs[0].get("precision")}


def batched_sweep(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """8 style weights as one batch (hydra/launcher=batched) against 8 runs one after another."""
    args = (plan.sweep_weights, plan.sweep_size, plan.sweep_steps)
    entry["sequential"] = sweep(plan, budget, "sweep_sequential", *args, None)
    save()
    entry["batched"] = sweep(plan, budget, "sweep_batched", *args, "batched")
    entry["x_faster"] = entry["sequential"]["command_s"] / entry["batched"]["command_s"]
    entry["x_faster_train"] = entry["sequential"]["train_s"] / entry["batched"]["train_s"]
    entry.update(size=plan.sweep_size, steps=plan.sweep_steps, goal_met=entry["x_faster"] >= 3.0)


def joblib(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """Two jobs sharing one device (hydra/launcher=joblib, n_jobs=2) against the two in a row."""
    args = (plan.sweep_weights[:2], plan.sweep_size, plan.sweep_steps)
    entry["sequential"] = sweep(plan, budget, "joblib_sequential", *args, None)
    save()
    entry["joblib"] = sweep(plan, budget, "joblib_two_jobs", *args, "joblib", ("hydra.launcher.n_jobs=2",))
    entry["x_faster"] = entry["sequential"]["command_s"] / entry["joblib"]["command_s"]
    entry.update(size=plan.sweep_size, steps=plan.sweep_steps)


def gpu_tests(plan: Plan, budget: Budget, entry: dict, save: Callable[[], None]) -> None:
    """``pytest -m gpu``: the tests a CPU machine skips, run where they can be; their counts."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=budget.timeout(),
                          env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    entry.update(exit_code=proc.returncode, result=last.strip("= "),
                 **{word: int(count) for count, word in re.findall(r"(\d+) (passed|failed|skipped|error)", last)})
    if proc.returncode != 0:
        raise RuntimeError(f"pytest -m gpu exited {proc.returncode}:\n{proc.stdout[-2500:]}")


def max_or_none(jobs: list[dict], key: str) -> float | None:
    values = [job[key] for job in jobs if job.get(key) is not None]
    return max(values) if values else None


SECTIONS: dict[str, Section] = {"speed": speed, "first_step": first_step, "overhead": overhead,
                                "lbfgs_500": lbfgs_500, "batched_sweep": batched_sweep, "joblib": joblib,
                                "gpu_tests": gpu_tests}


def machine() -> dict:
    """What ran the check: the GPU (name, memory, capability), torch, the host."""
    info = {"torch": torch.__version__, "python": platform.python_version(), "host_cpus": os.cpu_count(),
            "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                       "capability": list(torch.cuda.get_device_capability(0)), "count": torch.cuda.device_count()}
    return info


def run_section(name: str, plan: Plan, report: dict, save: Callable[[], None]) -> None:
    """Run one section inside its budget; an exception becomes the section's ``error``."""
    entry = report["sections"][name] = {"status": "running", "budget_s": plan.budgets[name]}
    start = time.monotonic()
    save()
    try:
        args = (plan, Budget(start + plan.budgets[name]), entry, save)
        if name == "first_step":
            SECTIONS[name](*args, report["sections"].get("speed", {}).get("rows", []))
        else:
            SECTIONS[name](*args)
        failed = [row for row in entry.get("rows", []) if "error" in row or "skipped" in row]
        entry["status"] = "partial" if failed else "ok"
    except Exception as error:  # the other sections still run
        entry["status"] = "error"
        entry["error"] = f"{type(error).__name__}: {error}"[-3000:]
        entry["traceback"] = traceback.format_exc()[-3000:]
    entry["seconds"] = round(time.monotonic() - start, 1)
    save()
    print(f"  {name}: {entry['status']} in {entry['seconds']:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check", help="directory for gpu_check.json, gpu_check.md, runs")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes and steps on the CPU, random weights")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset, in this order")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    args = parser.parse_args()
    out = Path(args.out)
    plan = make_plan(args.dry_run, out / "runs", args.budget_scale)
    report: dict = {"dry_run": args.dry_run, "machine": machine(), "plan": plan.describe(), "sections": {}}
    if not args.dry_run and not torch.cuda.is_available():
        print("warning: no CUDA device: the check measures the CPU (use --dry-run for the quick version)")

    def save() -> None:
        write_json(out / "gpu_check.json", report)
        with atomic_path(out / "gpu_check.md") as tmp:
            tmp.write_text(render_markdown(report))

    for name in args.sections.split(","):
        if name not in SECTIONS:
            parser.error(f"--sections: {name!r} is not one of {list(SECTIONS)}")
        run_section(name, plan, report, save)
    print(render_markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
