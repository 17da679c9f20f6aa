"""nst-exp against neural-style-pt (PyPI neural-style 0.5.7) on the peer's own objective.

    python scripts/benchmark.py --peer                         # 256 px x 200 and 512 px x 100 L-BFGS
    python scripts/benchmark.py --peer --peer-cases 256:200    # one case

Both sides run as users run them, each in a fresh process (start-up included), 2 torch
threads each, alternating (peer, nst-exp, peer, nst-exp, ...): nst-exp is
``python -m nst_exp.train experiment=neural_style init=content init.noise=0`` (the peer's objective and its
fixed-step L-BFGS in its pixel units), the peer is its own ``main()`` with ``-init image`` on
the same two images, pre-resized once so that neither side resamples, and the bundled VGG19
weights under its key names (raw Caffe scale; nst-exp's are the same net / s). Both first
losses must agree to 1e-5 (float rounding of one objective written two ways), or it stops.

Figures per case, each the best of ``--peer-repeats`` runs (the run least disturbed by the
rest of the machine): ms per evaluation (first to last evaluation), total wall time of the
process, and its peak RSS (``wait4``), and the ratios nst-exp / peer.

The peer lives in its own venv (default ~/.cache/nst-exp/peer-venv, made on first use):
torch==2.13.0 (the same CPU wheel; never unpinned, which pulls a CUDA build), torchvision
0.15.2 with --no-deps (newer ones do not import on this torch; the peer needs only its
pure-Python transforms), neural-style==0.5.7, requests, pillow. nst-exp's side runs as a user's
install runs it: in a venv of pyproject's runtime ``dependencies`` only (``--nst-venv``, default
~/.cache/nst-exp/user-venv, made on first use), with this tree on PYTHONPATH. The dev venv is
heavier than any user's (its SciPy makes torchmetrics import ``scipy.signal``: ~70 MB of RSS);
``--nst-venv current`` measures it anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).resolve().with_name("bench_peer_runner.py")
PEER_PACKAGES = (["torch==2.13.0"], ["--no-deps", "torchvision==0.15.2", "neural-style==0.5.7"],
                 ["requests", "pillow", "numpy"])  # torchvision imports numpy; torch no longer pulls it in
DEFAULT_VENV = Path.home() / ".cache" / "nst-exp" / "peer-venv"
FIRST_LOSS_RTOL = 1e-5


def ensure_venv(venv: Path, packages: list[list[str]], probe: str, env: dict[str, str] | None = None) -> Path:
    """The venv's python, creating the venv and installing ``packages`` (one pip call per
    list) unless ``probe`` (Python code) already runs there."""
    python = venv / "bin" / "python"
    command = [str(python), "-c", probe]
    if python.is_file() and subprocess.run(command, capture_output=True, env=env).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for group in packages:
        # --no-warn-conflicts: torchvision 0.15.2 is installed without its torch==2.0.1 pin on purpose
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-warn-conflicts", *group], check=True)
    subprocess.run(command, check=True, capture_output=True, env=env)
    return python


def ensure_peer(venv: Path) -> Path:
    """The peer's venv (torch, torchvision 0.15.2, neural-style and what it imports)."""
    return ensure_venv(venv, PEER_PACKAGES, "import neural_style.loader.CaffeLoader, torchvision.transforms")


def ensure_user_install(venv: Path) -> Path:
    """A venv with nst-exp's runtime dependencies only (pyproject's ``dependencies``: what
    ``pip install nst-exp`` gives a user), which runs this tree through PYTHONPATH.

    Not the dev venv: its extras add SciPy (the tests' L-BFGS-B reference), and torchmetrics,
    which Lightning imports, imports ``scipy.signal`` whenever SciPy is installed: ~70 MB of
    RSS no user's run has.
    """
    try:
        dependencies = [req for req in requires("nst-exp") or [] if "extra ==" not in req]  # this install's
    except PackageNotFoundError:
        dependencies = []
    if not dependencies:
        sys.exit("--peer: nst-exp is not installed here (pip install -e '.[dev]'), so its dependencies are "
                 "unknown; or pass --nst-venv current")
    return ensure_venv(venv, [dependencies], "import nst_exp.train", {**os.environ, "PYTHONPATH": str(ROOT)})


def nst_python(choice: str) -> str:
    """``--nst-venv``: ``current`` (this interpreter) or the user-install venv's python."""
    return sys.executable if choice == "current" else str(ensure_user_install(Path(choice).expanduser()))


def prepare_inputs(work: Path, size: int, content: str, style: str) -> tuple[Path, Path, Path]:
    """The bundled weights under the peer's key names, and both images resized to ``size`` once."""
    sys.path.insert(0, str(ROOT))
    from nst_exp.core.images import load_pair, save_image
    from nst_exp.core.weights import caffe_vgg19_state_dict

    weights = work / "vgg19-bundled.pth"  # the peer picks its architecture by "19" in the name
    if not weights.is_file():
        torch.save(caffe_vgg19_state_dict(), weights)  # raw Caffe scale, features.{i}.weight/bias
    content_t, style_t = load_pair(content, style, size)
    paths = work / f"content_{size}.png", work / f"style_{size}.png"
    save_image(content_t, paths[0])
    save_image(style_t, paths[1])
    return weights, *paths


def run_measured(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one command: its own rusage (``wait4``)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so the rusage is this child's
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_peer(python: Path, inputs: tuple[Path, Path, Path], size: int, steps: int, work: Path,
             env: dict[str, str]) -> dict:
    """neural-style-pt's main() with its defaults, ``-init image``, on the prepared inputs."""
    weights, content, style = inputs
    return run_side([str(python), str(RUNNER), "peer", str(work / "peer.json"), "-content_image", str(content),
                     "-style_image", str(style), "-image_size", str(size), "-gpu", "c", "-model_file", str(weights),
                     "-disable_check", "-num_iterations", str(steps), "-init", "image", "-print_iter", "0",
                     "-save_iter", "0", "-output_image", str(work / "peer.png")], env, work / "peer")


def run_nst_exp(python: str, inputs: tuple[Path, Path, Path], size: int, steps: int, work: Path,
                env: dict[str, str], extra: list[str]) -> dict:
    """``python -m nst_exp.train experiment=neural_style init=content init.noise=0``, as users run it."""
    _, content, style = inputs
    return run_side([python, str(RUNNER), "nst-exp", str(work / "nst.json"), "experiment=neural_style",
                     "init=content", "init.noise=0", f"pair.content={content}", f"pair.style={style}",
                     f"image_size={size}", f"steps={steps}", "logger=none", "snapshot_every=0",
                     "checkpoint_every=0", "log_every=50", "trainer=cpu", f"hydra.run.dir={work / 'nst'}", *extra],
                    {**env, "PYTHONPATH": str(ROOT)}, work / "nst")


def run_side(command: list[str], env: dict[str, str], stem: Path) -> dict:
    """One process's figures: ms per evaluation (wall and CPU) from its first to its last
    evaluation, its total wall and CPU time and peak RSS, and its first loss."""
    wall, cpu, rss = run_measured(command, env, stem.with_suffix(".log"))
    stamps = json.loads(Path(command[3]).read_text())["stamps"]
    (w0, c0, first), (w1, c1, _) = stamps[0], stamps[-1]
    n = len(stamps) - 1
    return {"ms_per_eval": 1000 * (w1 - w0) / n, "cpu_ms_per_eval": 1000 * (c1 - c0) / n, "evals": len(stamps),
            "first_eval_s": w0, "after_last_eval_s": wall - w1,
            "total_s": wall, "total_cpu_s": cpu, "peak_rss_mb": rss, "first_loss": first}


def case(pythons: tuple[Path, str], work: Path, size: int, steps: int, repeats: int, threads: int,
         extra: list[str], content: str, style: str) -> dict:
    """Alternating runs of one size (``pythons``: the peer's, nst-exp's); each side's best run,
    the ratios, and both first losses."""
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(work, size, content, style)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    runs: dict[str, list[dict]] = {"peer": [], "nst-exp": []}
    for repeat in range(repeats):
        runs["peer"].append(run_peer(pythons[0], inputs, size, steps, work, env))
        runs["nst-exp"].append(run_nst_exp(pythons[1], inputs, size, steps, work, env, extra))
        print(f"  {size} px run {repeat + 1}: " + ", ".join(
            f"{side} {r[-1]['ms_per_eval']:.1f} ms/eval (CPU {r[-1]['cpu_ms_per_eval']:.1f}) {r[-1]['total_s']:.1f} s"
            for side, r in runs.items()),
            flush=True)
    keys = ("ms_per_eval", "cpu_ms_per_eval", "total_s", "total_cpu_s", "peak_rss_mb", "first_eval_s",
            "after_last_eval_s")
    best = {side: {key: min(r[key] for r in rs) for key in keys}
            for side, rs in runs.items()}
    first = {side: rs[0]["first_loss"] for side, rs in runs.items()}
    if abs(first["nst-exp"] / first["peer"] - 1) > FIRST_LOSS_RTOL:
        sys.exit(f"first losses differ at {size} px: nst-exp {first['nst-exp']} vs peer {first['peer']}: "
                 "not the same objective")
    ratios = {key: best["nst-exp"][key] / best["peer"][key] for key in best["peer"]}
    return {"size": size, "steps": steps, "threads": threads, "first_loss": first, "best": best,
            "ratios": ratios, "runs": runs}


def peer(args) -> dict:
    """The ``--peer`` section of benchmark.json: one entry per ``SIZE:STEPS`` case."""
    import tempfile

    pythons = ensure_peer(Path(args.peer_venv).expanduser()), nst_python(args.nst_venv)
    print(f"peer: {pythons[0]}\nnst-exp: {pythons[1]}", flush=True)
    data = ROOT / "nst_exp" / "data" / "images"
    content, style = str(data / "content" / "tubingen.jpg"), str(data / "style" / "starry_night.jpg")
    results = []
    with tempfile.TemporaryDirectory(prefix="nst-peer-") as tmp:
        for spec in args.peer_cases.split(","):
            size, steps = (int(v) for v in spec.split(":"))
            result = case(pythons, Path(tmp) / spec.replace(":", "x"), size, steps, args.peer_repeats, 2,
                          [], content, style)
            r = result["ratios"]
            print(f"{size} px x {steps}: nst-exp / peer  ms per evaluation {r['ms_per_eval']:.3f} "
                  f"(CPU {r['cpu_ms_per_eval']:.3f}), total {r['total_s']:.3f} (CPU {r['total_cpu_s']:.3f}), "
                  f"peak RSS {r['peak_rss_mb']:.3f} "
                  f"(first losses {result['first_loss']['nst-exp']:.6g} vs {result['first_loss']['peer']:.6g})",
                  flush=True)
            results.append(result)
    return {"cases": results, "torch": torch.__version__, "pythons": [str(python) for python in pythons]}
