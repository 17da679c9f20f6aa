"""Report on a multirun directory from its files: report.csv, contact_sheet.png, losses.png, report.md.

    python scripts/report.py outputs/multirun/<date>/<time>
Safe to run while the sweep is still going; run it again for the jobs finished since.
"""

from __future__ import annotations

import argparse
import sys

from nst_exp.reporting.report import ReportError, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
