"""One timed run for scripts/bench_peer.py: neural-style-pt's or nst-exp's own entry point.

    <peer venv>/bin/python scripts/bench_peer_runner.py peer RESULT.json -content_image c.png ...
    python scripts/bench_peer_runner.py nst-exp RESULT.json experiment=neural_style ...

Each side's program runs unchanged; the only addition is a stamp after every loss + gradient
evaluation: wall time and this process's CPU time since start (CPU time is what a shared,
oversubscribed machine disturbs least), and the loss. The peer side imports nothing from
nst-exp: its venv holds only torch, torchvision 0.15.2, neural-style, requests and pillow.
"""

import json
import sys
import time

START_WALL, START_CPU = time.perf_counter(), time.process_time()
STAMPS: list[tuple[float, float, float]] = []


def stamp(loss) -> None:
    STAMPS.append((time.perf_counter() - START_WALL, time.process_time() - START_CPU, float(loss.sum())))


def run_peer() -> None:
    """neural_style.main(), its closure wrapped where torch's LBFGS calls it."""
    import torch

    step = torch.optim.LBFGS.step

    def timed_step(self, closure):
        def timed():
            loss = closure()
            stamp(loss)
            return loss

        return step(self, timed)

    torch.optim.LBFGS.step = timed_step
    sys.argv = ["neural_style", *sys.argv[3:]]  # neural_style parses its flags at import
    from neural_style import neural_style

    neural_style.main()


def run_nst_exp() -> None:
    """``python -m nst_exp.train``, each evaluation (StyleTransferModule._loss_and_grad) stamped."""
    from nst_exp.engine.module import StyleTransferModule
    from nst_exp.train import main

    evaluate = StyleTransferModule._loss_and_grad

    def timed(self, *args, **kwargs):
        loss, parts = evaluate(self, *args, **kwargs)
        stamp(loss)
        return loss, parts

    StyleTransferModule._loss_and_grad = timed
    sys.argv = ["nst_exp.train", *sys.argv[3:]]
    main()


if __name__ == "__main__":
    side, result = sys.argv[1], sys.argv[2]
    run_peer() if side == "peer" else run_nst_exp()
    with open(result, "w") as f:
        json.dump({"stamps": STAMPS}, f)
