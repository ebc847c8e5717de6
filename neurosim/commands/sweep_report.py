"""``neurosim sweep-report DIR``: (re)write the report of a sweep folder.

Reads the folder's ``sweep.json`` and every finished trial, and writes ``report.md``,
``sweep_trials.csv``, ``sweep_summary.csv``, ``sweep_tests.csv``, the figures and each
cell's comparison (see :mod:`neurosim.sweep_report`). ``neurosim sweep`` runs it at its end;
run it by hand for an interim report while a sweep is running.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep-report", description=__doc__,
                                   help="write the report of a sweep folder",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, metavar="DIR", help="sweep folder")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from neurosim.sweep_report import write_sweep_report

    print(f"report: {write_sweep_report(args.folder)}")
    return 0
