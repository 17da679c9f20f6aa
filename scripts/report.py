"""Report on a multirun directory: a thin wrapper around ``nst-report`` (nst_exp/reporting/cli.py).

    python scripts/report.py outputs/multirun/<date>/<time>
"""

from __future__ import annotations

import sys

from nst_exp.reporting.cli import main

if __name__ == "__main__":
    sys.exit(main())
