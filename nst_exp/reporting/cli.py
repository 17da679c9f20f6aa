"""``nst-report SWEEP_DIR``: write report.html (and .md, .csv, the PNGs) for a multirun directory.

Safe to run while the sweep is still going; run it again for the jobs finished since.
"""

from __future__ import annotations

import argparse
import sys

from nst_exp.errors import ReportError
from nst_exp.reporting.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun directory (the one holding multirun.yaml)")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.sweep_dir)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0


def cli() -> None:
    """Console entry point ``nst-report``."""
    sys.exit(main())
