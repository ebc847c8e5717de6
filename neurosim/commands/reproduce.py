"""``neurosim reproduce [FIGURE...]``: the paper's experiments on a simulated chip.

Regenerates each experiment of Cheon, Lee & Paik (NeurIPS 2024) into a folder of figures,
CSV/JSON data and a ``report.md`` that puts every claim of the paper beside our numbers,
with mean ± std over seeds and the paper's statistical tests (scipy). FIGURE is any of
fig1 fig2 fig3 fig4 fig5 table1 hardware (default: all). ``--quick`` shrinks data and
schedules (the whole suite in minutes on 2 cores). Finished training runs in ``--out`` are
reused, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neurosim.config import BACKENDS, resolve_chip_path
from neurosim.errors import ConfigError
from neurosim.reproduce.context import Context
from neurosim.reproduce.settings import FULL, QUICK
from neurosim.reproduce.suite import FIGURES, reproduce
from neurosim.runner import output_folder


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", description=__doc__,
                                   help="reproduce the paper's figures on a simulated chip",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="*", metavar="FIGURE",
                        help=f"experiments to run: {' '.join(FIGURES)} (default: all)")
    parser.add_argument("--chip", default="ideal",
                        help="chip preset in hw_configs/ or a chip YAML (default: ideal)")
    parser.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="seeds 0 .. N-1, N >= 2 (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="shrunk data and schedules (minutes on 2 cores)")
    parser.add_argument("--backend", choices=BACKENDS, default="numba",
                        help="arithmetic backend (default: numba)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: runs/reproduce[-quick]-<chip>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--data-dir", help="dataset folder (default: $NEUROSIM_DATA, else the user cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        raise ConfigError("neurosim reproduce", "FIGURE", unknown[0],
                          f"must be one of {', '.join(FIGURES)}")
    if args.seeds < 2:
        raise ConfigError("neurosim reproduce", "--seeds", args.seeds,
                          "must be >= 2 (every verdict is a test over seeds)")
    resolve_chip_path(args.chip)  # a clear error for an unknown preset, before anything runs
    settings = QUICK if args.quick else FULL
    chip_name = Path(args.chip).stem
    out = args.out or Path("runs") / f"reproduce{'-quick' if args.quick else ''}-{chip_name}"
    ctx = Context(out=out, chip=args.chip, seeds=tuple(range(args.seeds)), settings=settings,
                  data_dir=args.data_dir, backend=args.backend, progress=not args.quiet)
    start = time.perf_counter()
    with output_folder(out, resume=not args.overwrite, overwrite=args.overwrite,
                       what="neurosim reproduce"):
        report = reproduce(ctx, list(dict.fromkeys(args.figures)) or list(FIGURES))
    print(f"{report} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0
