"""``nst-score CONTENT STYLE IMAGE...``: score images made by any tool on the runs' own ruler.

Prints one JSON line per image: its path and the judge_* scores a run writes to summary.json
(nst_exp/core/yardstick.py says what each means). ``--style`` adds paintings to a blend and
``--blend`` weighs them, as ``pair.style`` and ``style_blend`` do. Every file is read before
anything is printed, so an unreadable one gives one error line, exit status 2 and no scores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from nst_exp.core.images import load_image
from nst_exp.core.yardstick import EDGE, Yardstick
from nst_exp.errors import UserError


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nst-score", description=__doc__.splitlines()[0])
    parser.add_argument("content", help="the photo")
    parser.add_argument("style", help="the painting")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="images to score")
    parser.add_argument("--style", dest="more_styles", action="append", default=[], metavar="PATH",
                        help="another painting of a blend (repeatable)")
    parser.add_argument("--blend", type=float, nargs="+", metavar="W",
                        help="blend weights, one per painting (default: equal)")
    parser.add_argument("--edge", type=int, default=EDGE, help=f"the ruler's long edge in px (default {EDGE}: "
                        "scores are comparable only at one edge)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or e.g. cuda")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    styles = [args.style, *args.more_styles]
    try:
        if args.blend is not None and (len(args.blend) != len(styles) or min(args.blend) < 0 or sum(args.blend) <= 0):
            raise UserError(f"--blend={args.blend}: needs {len(styles)} non-negative weights, not all 0")
        if args.edge < 32:
            raise UserError(f"--edge={args.edge}: must be at least 32 px (relu5_1 needs 16)")
        photo = load_image(args.content, "CONTENT")
        paintings = [load_image(path, "STYLE") for path in styles]
        images = [load_image(path, "IMAGE") for path in args.images]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    yardstick = Yardstick(args.edge, args.device)
    reference = yardstick.reference(photo, paintings, args.blend)
    for path, image in zip(args.images, images, strict=True):
        scores = yardstick.score(image, reference)
        scores = {key: value if math.isfinite(value) else None for key, value in scores.items()}
        print(json.dumps({"image": path, **scores}), flush=True)  # JSON has no NaN
    return 0


def cli() -> None:
    """Console entry point ``nst-score``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
