"""How fast is nst-exp per step, against a hand-written loop and the tutorial loop?

    python scripts/benchmark.py                  # 256 px table + 128/256/512 px scaling + profile (< 10 min)
    python scripts/benchmark.py --to-loss 50     # wall time to reach the loss naive reaches in 50 steps
    python scripts/benchmark.py --batched        # 8 style weights: one batch vs 8 sequential runs
    python scripts/benchmark.py --quick          # tiny sizes and steps: checks that it all runs
    python scripts/benchmark.py --multiscale     # coarse-to-fine vs one 512 px L-BFGS run (bench_multiscale.py)
    python scripts/benchmark.py --peer           # against neural-style-pt on its objective (bench_peer.py)

Each variant runs in its own process (scripts/bench_workers.py) so that its peak RSS is its
own; results go to benchmark.json (sections merge into an existing file). GFLOP/s counts the
forward + input-gradient FLOPs of the truncated VGG per evaluation, for every variant (the
useful work), against a measured fp32 matmul peak of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import WorkerError, fixed_cost, matmul_peak, run_worker, summarise

from nst_exp.engine.speed import native_bf16

VARIANTS = ("bare", "naive", "nst-exp")
OPTIMIZERS = ("adam", "lbfgs")


def worker(spec: dict) -> dict:
    """Run one variant in a fresh process and return its result line (exit on failure)."""
    try:
        return run_worker(spec)
    except WorkerError as error:
        sys.exit(f"benchmark worker {error}")


def step_table(args: argparse.Namespace, size: int, variants: tuple[str, ...], optimizers: tuple[str, ...],
               peak: float, precision: str = "32-true") -> list[dict]:
    """One row per variant and optimiser: the fastest of ``--repeats`` interleaved runs (naive: one).

    Interleaving (bare, nst-exp, bare, nst-exp, ...) and keeping each variant's best run make
    the ratio robust to the few-percent drift of a shared machine (timeit's rule: the minimum
    is the run least disturbed by everything else).
    """
    best_runs: dict[tuple[str, str], dict] = {}
    for repeat in range(args.repeats):
        for optimizer in optimizers:
            for variant in variants:
                if variant == "naive" and repeat:
                    continue
                # naive is 4-5x slower per step: half the steps keep the default run under 10 minutes
                warmup, steps = (1, max(2, args.steps // 2)) if variant == "naive" else (args.warmup, args.steps)
                spec = {"variant": variant, "optimizer": optimizer, "size": size, "steps": warmup + steps,
                        "weights": args.weights, "threads": args.threads, "precision": precision}
                print(f"  {variant:8s} {optimizer:6s} {precision} {size} px (run {repeat + 1}) ...", flush=True)
                row = {"variant": variant, "optimizer": optimizer, "precision": precision, "size": size,
                       "timed_steps": steps, **summarise(worker(spec), warmup, steps, peak)}
                best = best_runs.setdefault((variant, optimizer), row)
                best.setdefault("ms_per_step_runs", []).append(round(row["ms_per_step"], 1))
                if row["ms_per_step"] < best["ms_per_step"]:
                    best_runs[(variant, optimizer)] = {**row, "ms_per_step_runs": best["ms_per_step_runs"]}
    rows = list(best_runs.values())
    for row in rows:
        bare = next((r for r in rows if r["variant"] == "bare" and r["optimizer"] == row["optimizer"]), None)
        row["x_bare"] = row["ms_per_step"] / bare["ms_per_step"] if bare else None
        row["x_bare_per_eval"] = row["ms_per_eval"] / bare["ms_per_eval"] if bare else None
    return rows


def fixed_costs(rows: list[dict]) -> list[dict]:
    """nst-exp minus bare, per size, optimiser and precision: what the framework adds per step.

    At 32 px a step is a few ms of arithmetic, so the difference is the per-step Python of
    Lightning's loop, the callbacks and the loggers (the GPU regime: docs/performance.md).
    """
    costs = []
    for row in rows:
        key = (row["size"], row["optimizer"], row["precision"])
        bare = next((r for r in rows if r["variant"] == "bare" and (r["size"], r["optimizer"], r["precision"]) == key),
                    None)
        if row["variant"] == "nst-exp" and bare:
            costs.append({"size": row["size"], "optimizer": row["optimizer"], "precision": row["precision"],
                          **fixed_cost(row["ms_per_step"], bare["ms_per_step"], row.get("cpu_ms_per_step"),
                                       bare.get("cpu_ms_per_step"), row.get("outside_cpu_ms_per_step"),
                                       bare.get("outside_cpu_ms_per_step"))})
    return costs


def print_fixed_costs(costs: list[dict]) -> None:
    print("\nfixed cost per step (nst-exp - bare, steady state, each the fastest of --repeats interleaved runs;"
          " CPU: process CPU time, which with --threads 1 other processes' load does not inflate)")
    for c in costs:
        cpu = f", CPU {c['fixed_cpu_ms']:+6.2f} ms/step" if "fixed_cpu_ms" in c else ""
        if "fixed_outside_cpu_ms" in c:
            cpu += f", CPU outside the evaluations {c['fixed_outside_cpu_ms']:+5.2f} ms/step"
        print(f"  {c['size']:>5} px {c['optimizer']:6} {c['precision']:10} nst-exp {c['project_ms']:8.2f} ms, "
              f"bare {c['bare_ms']:8.2f} ms: {c['fixed_ms']:+6.2f} ms/step ({c['x_bare']:.3f}x){cpu}")


def print_steps(rows: list[dict]) -> None:
    print(f"\n{'size':>5} {'variant':8} {'opt':11} {'ms/step':>8} {'x bare':>7} {'evals':>6} {'ms/eval':>8} "
          f"{'x bare/eval':>11} {'GFLOP/s':>8} {'%peak':>6} {'RSS MB':>7} {'+base':>6}")
    for r in rows:
        ratio = f"{r['x_bare']:.2f}" if r["x_bare"] else "-"
        ratio_eval = f"{r['x_bare_per_eval']:.2f}" if r["x_bare_per_eval"] else "-"
        opt = r["optimizer"] + (" bf16" if r.get("precision") == "bf16-mixed" else "")
        print(f"{r['size']:>5} {r['variant']:8} {opt:11} {r['ms_per_step']:8.1f} {ratio:>7} "
              f"{r['evals_per_step']:6.2f} {r['ms_per_eval']:8.1f} {ratio_eval:>11} {r['gflops']:8.1f} "
              f"{r['pct_peak']:6.1f} {r['peak_rss_mb']:7.0f} {r['rss_over_baseline_mb']:6.0f}")


def to_loss(args: argparse.Namespace) -> dict:
    """Run everything N steps; time for each run to reach what naive reaches after N steps."""
    runs = {}
    for optimizer in OPTIMIZERS:
        for variant in VARIANTS:
            print(f"  {variant:8s} {optimizer:6s} {args.to_loss} steps ...", flush=True)
            runs[f"{variant}/{optimizer}"] = worker({"variant": variant, "optimizer": optimizer, "size": args.size,
                                                     "steps": args.to_loss, "weights": args.weights,
                                                     "threads": args.threads})
    table = {}
    for optimizer in OPTIMIZERS:
        target = min(runs[f"naive/{optimizer}"]["losses"])
        naive_s = time_to(runs[f"naive/{optimizer}"], target)
        table[f"naive/{optimizer}"] = {"target_loss": target, "naive_s": naive_s, "runs": {
            name: {"seconds": (t := time_to(run, target)), "x_faster": naive_s / t if t else None}
            for name, run in runs.items()}}
    print(f"\nwall time to reach the loss naive reaches in {args.to_loss} steps ({args.size} px)")
    print(f"{'run':16}" + "".join(f"{'naive/' + o + ' target':>26}" for o in OPTIMIZERS))
    for name in runs:
        cells = []
        for optimizer in OPTIMIZERS:
            cell = table[f"naive/{optimizer}"]["runs"][name]
            cells.append(f"{cell['seconds']:8.1f} s ({cell['x_faster']:4.1f}x)" if cell["seconds"] else "not reached")
        print(f"{name:16}" + "".join(f"{c:>26}" for c in cells))
    trajectories = {name: {"walls": run["walls"], "losses": run["losses"]} for name, run in runs.items()}
    return {"steps": args.to_loss, "size": args.size, "targets": table, "trajectories": trajectories}


def time_to(run: dict, target: float, rtol: float = 1e-4) -> float | None:
    """Seconds until the image reached ``target`` (losses are measured at the start of a step).

    ``rtol``: runs on the same trajectory as naive differ from it by float rounding only.
    """
    for k, loss in enumerate(run["losses"]):
        if loss <= target * (1 + rtol):
            return run["walls"][k - 1] if k else 0.0
    return None


def batched(args: argparse.Namespace) -> dict:
    """8 style weights: one batch vs 8 sequential runs, per size, optimiser and precision, next to
    the ceiling a hand-written loop gets from batching (a batch of B steps vs B single steps)."""
    weights = [f"{w:g}" for w in (1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6)][:args.batch]
    cases = [("adam", "32-true"), ("lbfgs", "32-true")]
    if native_bf16("cpu"):  # AMX / AVX512-BF16: bf16 kernels that one small image cannot keep busy
        cases.append(("adam", "bf16-mixed"))
    result: dict = {"steps": args.steps, "style_weights": weights, "sizes": {}}
    for size in (int(s) for s in args.batched_size.split(",")):
        for optimizer, precision in cases:
            row = batched_case(args, weights, size, optimizer, precision)
            result["sizes"].setdefault(str(size), {})[f"{optimizer}/{precision}"] = row
            ceiling = f", hand-written loop's ceiling {row['bare_ceiling']:.2f}x" if "bare_ceiling" in row else ""
            print(f"  {size} px {optimizer} {precision}: {len(weights)} x {args.steps} steps: sequential "
                  f"{row['sequential']['wall_s']:.1f} s, batched {row['batched']['wall_s']:.1f} s -> "
                  f"{row['x_faster_wall']:.2f}x (training only {row['x_faster_train']:.2f}x{ceiling})", flush=True)
    return result


def batched_case(args: argparse.Namespace, weights: list[str], size: int, optimizer: str, precision: str) -> dict:
    spec = {"optimizer": optimizer, "size": size, "steps": args.steps, "weights": args.weights,
            "threads": args.threads, "style_weights": weights, "precision": precision}
    seq = worker({**spec, "variant": "sweep-sequential"})
    bat = worker({**spec, "variant": "sweep-batched"})
    row = {"sequential": seq, "batched": bat, "x_faster_wall": seq["wall_s"] / bat["wall_s"],
           "x_faster_train": seq["train_s"] / bat["train_s"]}
    if optimizer == "adam":  # an evaluation costs the same for both optimisers
        loop = {**spec, "variant": "bare", "steps": args.warmup + args.steps}
        one = summarise(worker({**loop, "style_weights": weights[:1]}), args.warmup, args.steps, 1.0)
        many = summarise(worker(loop), args.warmup, args.steps, 1.0)
        row["bare_ceiling"] = len(weights) * one["ms_per_step"] / many["ms_per_step"]
    return row


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="long edge, px, of the main table")
    parser.add_argument("--sizes", default="128,256,512", help="long edges for the scaling table ('' = none)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default 20; 200 at --size <= 64, where a step is a few ms and the "
                             "framework's fixed cost per step must stand out of the noise)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of bare / nst-exp; the fastest counts")
    parser.add_argument("--weights", default="caffe", help="caffe (real, bundled) | random")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--to-loss", type=int, default=0, metavar="N", help="run the time-to-loss comparison only")
    parser.add_argument("--batched", action="store_true", help="run the batched-sweep comparison only")
    parser.add_argument("--batch", type=int, default=8, help="style weights in the batched comparison (max 8)")
    parser.add_argument("--batched-size", default="128", help="long edge(s) for --batched, e.g. 64,128,256")
    parser.add_argument("--multiscale", action="store_true",
                        help="coarse-to-fine vs single-scale 512 px L-BFGS only (scripts/bench_multiscale.py)")
    parser.add_argument("--peer", action="store_true",
                        help="nst-exp vs neural-style-pt on the peer's objective only (scripts/bench_peer.py)")
    parser.add_argument("--peer-cases", default="256:200,512:100", help="--peer: SIZE:STEPS,... L-BFGS runs")
    parser.add_argument("--peer-repeats", type=int, default=2, help="--peer: alternating runs per side")
    parser.add_argument("--peer-venv", default="~/.cache/nst-exp/peer-venv", help="--peer: the peer's venv")
    parser.add_argument("--nst-venv", default="~/.cache/nst-exp/user-venv",
                        help="--peer: nst-exp's side, a venv of its runtime dependencies only (as users install "
                             "it; made on first use) | current: this interpreter")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler top-ops table")
    parser.add_argument("--quick", action="store_true", help="64 px, 2+3 steps, sizes 64,96: a smoke run")
    parser.add_argument("--out", default="benchmark.json")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 200 if args.size <= 64 else 20
    if args.quick:
        args.size, args.sizes, args.steps, args.warmup, args.batched_size = 64, "64,96", 3, 2, "64"
        args.repeats = 1
        args.to_loss = min(args.to_loss, 4)
    return args


def main() -> None:
    args = parse()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    peak = matmul_peak(args.threads)
    report["machine"] = {"cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                         "matmul_peak_gflops": round(peak, 1), "load_avg": os.getloadavg()}
    print(f"{args.threads} threads, fp32 matmul peak {peak:.1f} GFLOP/s, load average {os.getloadavg()[0]:.1f}")
    if args.peer:
        from bench_peer import peer

        report["peer"] = peer(args)
    elif args.multiscale:
        from bench_multiscale import CANDIDATES, multiscale

        with tempfile.TemporaryDirectory(prefix="nst-multiscale-") as work:
            report["multiscale"] = multiscale(list(CANDIDATES), args.threads, Path(work))
    elif args.to_loss:
        report["to_loss"] = to_loss(args)
    elif args.batched:
        report["batched"] = batched(args)
    else:
        # naive runs all five poolings of the full VGG: under 64 px the image's short side runs out
        rows = step_table(args, args.size, VARIANTS if args.size >= 64 else ("bare", "nst-exp"), OPTIMIZERS, peak)
        for size in (int(s) for s in args.sizes.split(",") if s and int(s) != args.size):
            rows += step_table(args, size, ("bare", "nst-exp"), ("adam",), peak)
        if native_bf16("cpu"):  # bf16 autocast, Adam only (`precision=bf16-mixed`): AMX convolutions
            report["machine"]["bf16_matmul_peak_gflops"] = round(peak_bf16 := matmul_peak(args.threads, torch.bfloat16))
            rows += step_table(args, args.size, ("bare", "nst-exp"), ("adam",), peak_bf16, "bf16-mixed")
        rows.sort(key=lambda r: (r["size"], r["optimizer"], r["precision"]))
        print_steps(rows)
        print_fixed_costs(costs := fixed_costs(rows))
        report["steps"] = {"size": args.size, "warmup": args.warmup, "timed_steps": args.steps,
                           "weights": args.weights, "rows": rows, "fixed_cost": costs}
        if not args.no_profile:
            prof = worker({"variant": "nst-exp", "optimizer": "adam", "size": args.size, "steps": args.warmup + 3,
                           "weights": args.weights, "threads": args.threads, "profile": 3})
            print(f"\ntorch.profiler, nst-exp Adam at {args.size} px, 3 steps after warm-up (self CPU time):\n"
                  f"{prof['profile']}")
            report["profile"] = prof["profile"]
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
