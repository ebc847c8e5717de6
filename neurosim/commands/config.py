"""``neurosim config validate|show|fields``: check and inspect configuration files."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from neurosim.commands.run import add_override_arguments
from neurosim.config import ChipConfig, ExperimentConfig, expand_runs, load_chip, load_experiment, read_yaml
from neurosim.errors import NeurosimError
from neurosim.schema import field_docs, to_plain
from neurosim.sweep_plan import SweepConfig, load_sweep


CHIP_ONLY_FIELDS = frozenset(f.name for f in dataclasses.fields(ChipConfig)) - frozenset(
    f.name for f in dataclasses.fields(ExperimentConfig))


KINDS = {"experiment": ExperimentConfig, "chip": ChipConfig, "sweep": SweepConfig}


def _is_chip(path: Path) -> bool:
    """A chip file sets a field only a chip has (``forward``, ``energy``, ``source``, ...)."""
    return not CHIP_ONLY_FIELDS.isdisjoint(read_yaml(path))


def _is_sweep(path: Path) -> bool:
    return "experiment" in read_yaml(path)  # an experiment has no such field


def register(subparsers) -> None:
    parser = subparsers.add_parser("config", help="validate or inspect configuration files",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="validate an experiment, chip or sweep YAML")
    validate.add_argument("file", type=Path)
    add_override_arguments(validate)
    validate.set_defaults(func=run_validate)
    show = sub.add_parser("show", help="print an experiment, chip or sweep with every "
                                       "default filled in")
    show.add_argument("file", type=Path)
    add_override_arguments(show)
    show.set_defaults(func=run_show)
    fields = sub.add_parser("fields", help="list every field with its default and meaning")
    fields.add_argument("kind", choices=tuple(KINDS))
    fields.set_defaults(func=run_fields)


def _no_overrides_for_a_sweep(args: argparse.Namespace) -> None:
    if args.overrides:
        raise NeurosimError(f"{args.file}: a sweep takes no --set; put overrides in its "
                            "overrides field")


def run_validate(args: argparse.Namespace) -> int:
    if _is_chip(args.file):
        chip = load_chip(args.file, args.overrides)
        print(f"{args.file}: valid chip '{chip.name}'")
        return 0
    if _is_sweep(args.file):
        _no_overrides_for_a_sweep(args)
        plan = load_sweep(args.file)
        seeds = len({trial.spec.seed for trial in plan.trials})
        print(f"{args.file}: valid sweep '{plan.config.name}' ({len(plan.trials)} trials: "
              f"{len(plan.cells)} cells x {len(plan.conditions)} conditions x {seeds} seeds)")
        return 0
    experiment = load_experiment(args.file, args.overrides)
    runs = expand_runs(experiment, args.file)
    conditions = sorted({r.condition for r in runs})
    print(f"{args.file}: valid experiment '{experiment.name}' "
          f"({len(runs)} runs: conditions {', '.join(conditions)})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    if _is_sweep(args.file):
        _no_overrides_for_a_sweep(args)
        config = load_sweep(args.file).config
    else:
        config = (load_chip(args.file, args.overrides) if _is_chip(args.file)
                  else load_experiment(args.file, args.overrides))
    print(yaml.safe_dump(to_plain(config), sort_keys=False), end="")
    return 0


def run_fields(args: argparse.Namespace) -> int:
    for path, default, doc in field_docs(KINDS[args.kind]):
        print(f"{path:40s} {default:20s} {doc}")
    return 0
