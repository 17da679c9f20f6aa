"""gpu_check.json as Markdown tables (gpu_check.md, and the end of the console output): what
docs/performance.md's GPU section takes over. Any part of the JSON may be missing (a killed run,
a failed section): each table shows what is there and says what is not."""

from __future__ import annotations

from collections.abc import Iterable


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table; floats with 4 significant digits, None as '-'."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(report: dict) -> str:
    """The whole report: machine, then one table per section, then every error."""
    gpu = (report.get("machine") or {}).get("gpu") or {}
    kind = "dry run (CPU, tiny sizes)" if report.get("dry_run") else gpu.get("name", "no GPU")
    lines = [f"# gpu_check: {kind}", "",
             f"torch {report.get('machine', {}).get('torch')}, CUDA {report.get('machine', {}).get('cuda')}", ""]
    sections = report.get("sections", {})
    for name, render in RENDERERS.items():
        entry = sections.get(name)
        if entry is None:
            continue
        lines += [f"## {name} ({entry.get('status')}, {cell(entry.get('seconds'))} s)", ""]
        if entry.get("status") != "error":
            lines += render(entry) + [""]
        if entry.get("error"):
            lines += ["```", entry["error"].strip()[-800:], "```", ""]
    return "\n".join(lines)


def first_step(entry: dict) -> list[str]:
    return table(["run", "first loss", "rel. diff to CPU"],
                 [("CPU", entry.get("cpu_loss"), None),
                  ("device, fp32", entry.get("fp32_loss"), entry.get("fp32_rel_diff")),
                  ("device, TF32 (torch's default convs)", entry.get("tf32_loss"), entry.get("tf32_rel_diff"))]) \
        + ["", f"goal <= 1e-3 (fp32): {cell(entry.get('goal_met'))}"]


def speed(entry: dict) -> list[str]:
    return table(["px", "optimizer", "mode", "ms/step", "evals/step", "peak GPU MB", "note"],
                 [(r["size"], r["optimizer"], r["mode"], r.get("ms_per_step"), r.get("evals_per_step"),
                   r.get("peak_gpu_mb"), r.get("skipped") or (r["error"].strip().splitlines()[-1][:80]
                                                              if r.get("error") else ""))
                  for r in entry.get("rows", [])])


def overhead(entry: dict) -> list[str]:
    return table(["px", "optimizer", "nst-exp ms/step", "bare ms/step", "fixed ms/step", "x bare"],
                 [(r["size"], r["optimizer"], r["project_ms"], r["bare_ms"], r["fixed_ms"], r["x_bare"])
                  for r in entry.get("rows", [])])


def lbfgs_500(entry: dict) -> list[str]:
    return table(["px", "steps", "status", "train s", "wall s (run)", "command s", "ms/step", "peak GPU MB",
                  "goal < 8 s"],
                 [(entry.get("size"), entry.get("steps"), entry.get("run_status"), entry.get("train_time_s"),
                   entry.get("wall_time_s"), entry.get("command_s"), entry.get("ms_per_step"),
                   entry.get("peak_gpu_mb"), entry.get("goal_met"))])


def sweeps(first: str, second: str, goal: str | None = None) -> callable:
    """A two-row table, one row per way of running the same sweep, and the speed-up."""

    def render(entry: dict) -> list[str]:
        rows = [(way, (run := entry.get(way) or {}).get("jobs"), run.get("command_s"), run.get("train_s"),
                 run.get("peak_gpu_mb")) for way in (first, second)]
        note = f"{entry.get('size')} px, {entry.get('steps')} Adam steps per job; x faster (command wall time): " \
               f"{cell(entry.get('x_faster'))}" + (f", training only {cell(entry['x_faster_train'])}"
                                                   if "x_faster_train" in entry else "") \
               + (f"; goal {goal}: {cell(entry.get('goal_met'))}" if goal else "")
        return table(["way", "jobs", "command s", "train s (a batch: shared)", "peak GPU MB"], rows) + ["", note]

    return render


def gpu_tests(entry: dict) -> list[str]:
    return table(["passed", "failed", "skipped", "pytest -m gpu"],
                 [(entry.get("passed", 0), entry.get("failed", 0), entry.get("skipped", 0), entry.get("result"))])


RENDERERS = {"first_step": first_step, "speed": speed, "overhead": overhead, "lbfgs_500": lbfgs_500,
             "batched_sweep": sweeps("sequential", "batched", ">= 3x"), "joblib": sweeps("sequential", "joblib"),
             "gpu_tests": gpu_tests}
