"""``neurosim run EXPERIMENT.yaml``: run an experiment and write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurosim.config import BACKENDS, load_experiment
from neurosim.cores import available_cores
from neurosim.runner import run_experiment


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a field by its dotted path, e.g. train.epochs=3 "
                             "(repeatable; validated like the file); a condition the file "
                             "lacks is given whole, conditions.NAME={rule: bp}")


def positive_int(text: str) -> int:
    """An option's value as an integer of at least 1 (argparse's ``type``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run an experiment (all conditions and seeds)",
                                   description=__doc__)
    parser.add_argument("experiment", type=Path, help="experiment YAML file")
    add_override_arguments(parser)
    parser.add_argument("--backend", choices=BACKENDS,
                        help="arithmetic backend (default: the file's, else numba)")
    parser.add_argument("--population", type=int, metavar="M",
                        help="seeds population.first_seed .. + M - 1 of every condition, "
                             "simulated at once: one population per chip, network, rule and "
                             "simulation the conditions use (population.size=M; replaces the "
                             "file's seeds)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out; finished runs are kept")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--data-dir", help="dataset folder (default: $NEUROSIM_DATA, else the user cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--no-run-reports", action="store_true",
                        help="skip each run's CSV curves, figures and report.md (large "
                             "studies); the comparison of all runs is still written")
    parser.add_argument("--report-processes", type=positive_int, default=available_cores(),
                        metavar="N",
                        help="write the run reports N at a time, in worker processes "
                             "(default: one per core, here %(default)s)")
    parser.set_defaults(func=main)


def population_overrides(size: int) -> list[str]:
    """``--population M``: seeds 0 .. M - 1 (``population.first_seed`` on) of every
    condition as one population, instead of the file's seeds or population seeds."""
    return [f"population.size={size}", "population.seeds=null", "seeds=null"]


def main(args: argparse.Namespace) -> int:
    from neurosim.commands.config import read_as  # that module imports this one

    overrides = list(args.overrides)
    if args.backend:
        overrides.append(f"simulation.backend={args.backend}")
    if args.population is not None:
        overrides += population_overrides(args.population)
    with read_as(args.experiment, "experiment"):
        experiment = load_experiment(args.experiment, overrides)
    out = args.out or Path("runs") / experiment.name
    report = run_experiment(experiment, args.experiment, out, resume=args.resume,
                            overwrite=args.overwrite, progress=not args.quiet,
                            data_dir=args.data_dir, run_reports=not args.no_run_reports,
                            report_processes=args.report_processes)
    print(f"report: {report}")
    return 0
