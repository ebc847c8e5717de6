"""``neurosim sweep SWEEP.yaml``: run every trial of a sweep on Dask, then its report.

The sweep file names a base experiment, a grid and/or a list of dotted overrides, the
conditions (strategies) and seeds (see :mod:`neurosim.sweep_plan`). Every trial is a run
folder ``<out>/<cell>/<condition>/seed<k>/`` as ``neurosim run`` makes it, computed as one
Dask task: on a local cluster of one single-threaded worker process per core (``--workers``
to change), or on the cluster of ``--scheduler ADDRESS``. With ``--population-chips N`` (or
the file's ``population``) a task is a population of up to N trials simulated at once (the
way to use GPU workers; on CPU workers the shipped sweep gains nothing from it:
docs/scaling.md). Re-running the same command continues an interrupted sweep: finished
trials are kept, unfinished ones resume from their last checkpoint. Exit status 1 when a
trial failed (the summary says which and why).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from neurosim.commands.config import read_as
from neurosim.commands.run import positive_int
from neurosim.sweep_plan import load_sweep, with_population

EXIT_TRIALS_FAILED = 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", description=__doc__,
                                   help="run a sweep of trials on Dask (local or a cluster)",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="sweep YAML file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler to use, e.g. tcp://10.0.0.5:8786 (default: start "
                            "a local cluster)")
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="worker processes of the local cluster (default: one per core)")
    parser.add_argument("--out", type=Path, help="sweep folder (default: runs/<name>)")
    parser.add_argument("--data-dir", help="dataset folder (default: $NEUROSIM_DATA, else the "
                                           "user cache); every worker must see it")
    parser.add_argument("--population-chips", type=positive_int, metavar="N",
                        help="simulate the trials that share chip, network, rule and "
                             "simulation as populations of at most N chips, one task each "
                             "(the sweep's population.max_chips)")
    parser.add_argument("--run-reports", action="store_true",
                        help="also write each trial's CSV curves, figures and report.md "
                             "(seconds per trial; a trial done without its report, in an "
                             "earlier sweep, gets it too)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the sweep and list its trials; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=main)


def failure_lines(failures: list[dict]) -> list[str]:
    """Why trials failed: one line per distinct error, with its count and a trial."""
    reasons = Counter((f["error"]["type"], f["error"]["message"]) for f in failures)
    lines = []
    for (kind, message), count in reasons.most_common():
        trial = next(f for f in failures if (f["error"]["type"], f["error"]["message"])
                     == (kind, message))
        where = f"{trial['path']}/{trial['error']['traceback']}" if trial["error"]["traceback"] \
            else trial["path"]
        lines.append(f"  {count} x {kind}: {message} (e.g. {where})")
    return lines


def main(args: argparse.Namespace) -> int:
    with read_as(args.sweep, "sweep"):
        plan = load_sweep(args.sweep)
    if args.population_chips is not None:
        plan = with_population(plan, args.population_chips)
    out = args.out or Path("runs") / plan.config.name
    if args.dry_run:
        for trial in plan.trials:
            print(trial.run_dir(out))
        print(f"{args.sweep}: valid sweep '{plan.config.name}': {len(plan.trials)} trials in "
              f"{len(plan.cells)} cells x {len(plan.conditions)} conditions")
        return 0
    from neurosim.sweep import run_sweep

    outcome = run_sweep(plan, out, args.scheduler, args.workers, args.data_dir,
                        args.run_reports, progress=not args.quiet)
    counts = outcome.counts
    print(f"sweep {plan.config.name}: {len(plan.trials)} trials: {counts['done']} done "
          f"({outcome.reused} already done before), {counts['failed']} failed, "
          f"{counts['pending']} unfinished")
    if outcome.failures:
        print("failed trials:")
        print("\n".join(failure_lines(outcome.failures)))
    print(f"report: {outcome.report}")
    return EXIT_TRIALS_FAILED if counts["failed"] or counts["pending"] else 0
