"""``neurosim config validate|show|fields``: check and inspect configuration files."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

import yaml

from neurosim.commands.run import add_override_arguments
from neurosim.config import ChipConfig, ExperimentConfig, expand_runs, load_chip, load_experiment, read_yaml
from neurosim.errors import ConfigError, NeurosimError
from neurosim.schema import field_docs, to_plain
from neurosim.sweep_plan import SweepConfig, load_sweep


KINDS = {"experiment": ExperimentConfig, "chip": ChipConfig, "sweep": SweepConfig}
A_KIND = {"experiment": "an experiment", "chip": "a chip", "sweep": "a sweep"}
FILE_HELP = "an experiment, chip or sweep YAML file (presets: hw_configs/NAME.yaml)"
FIELDS = {kind: frozenset(f.name for f in dataclasses.fields(cls)) for kind, cls in KINDS.items()}


def file_kind(data: dict) -> tuple[str, str]:
    """The kind of a config file's top-level mapping ``data``: the one knowing most of its
    keys (a stray key of another kind, such as an experiment's ``tiles:``, does not decide
    it), ties going to the first of :data:`KINDS`; and, when the file also has keys that
    only another kind has, a note saying which kind was assumed (else ``""``)."""
    keys = set(data)
    kind = max(KINDS, key=lambda k: len(keys & FIELDS[k]))  # max keeps the first of ties
    foreign = [f"{key} is {A_KIND[next(k for k in KINDS if key in FIELDS[k])]}'s field"
               for key in sorted(keys - FIELDS[kind], key=str)
               if any(key in fields for fields in FIELDS.values())]
    note = (f" (read as {A_KIND[kind]} file, the kind most of its keys belong to; "
            f"{', '.join(foreign)})") if foreign else ""
    return kind, note


def register(subparsers) -> None:
    parser = subparsers.add_parser("config", help="validate or inspect configuration files",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="validate an experiment, chip or sweep YAML")
    validate.add_argument("file", type=Path, help=FILE_HELP)
    add_override_arguments(validate)
    validate.set_defaults(func=run_validate)
    show = sub.add_parser("show", help="print an experiment, chip or sweep with every "
                                       "default filled in")
    show.add_argument("file", type=Path, help=FILE_HELP)
    add_override_arguments(show)
    show.set_defaults(func=run_show)
    fields = sub.add_parser("fields", help="list every field with its default and meaning")
    fields.add_argument("kind", choices=tuple(KINDS), help="which file's fields")
    fields.set_defaults(func=run_fields)


def _no_overrides_for_a_sweep(args: argparse.Namespace) -> None:
    if args.overrides:
        raise NeurosimError(f"{args.file}: a sweep takes no --set; put overrides in its "
                            "overrides field")


def run_validate(args: argparse.Namespace) -> int:
    with _named_kind(args.file) as kind:
        if kind == "chip":
            chip = load_chip(args.file, args.overrides)
            print(f"{args.file}: valid chip '{chip.name}'")
        elif kind == "sweep":
            _no_overrides_for_a_sweep(args)
            plan = load_sweep(args.file)
            seeds = len({trial.spec.seed for trial in plan.trials})
            print(f"{args.file}: valid sweep '{plan.config.name}' ({len(plan.trials)} trials: "
                  f"{len(plan.cells)} cells x {len(plan.conditions)} conditions x {seeds} seeds)")
        else:
            experiment = load_experiment(args.file, args.overrides)
            runs = expand_runs(experiment, args.file)
            conditions = sorted({r.condition for r in runs})
            print(f"{args.file}: valid experiment '{experiment.name}' "
                  f"({len(runs)} runs: conditions {', '.join(conditions)})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _named_kind(args.file) as kind:
        if kind == "sweep":
            _no_overrides_for_a_sweep(args)
            config = load_sweep(args.file).config
        else:
            config = (load_chip(args.file, args.overrides) if kind == "chip"
                      else load_experiment(args.file, args.overrides))
    print(yaml.safe_dump(to_plain(config), sort_keys=False), end="")
    return 0


@contextlib.contextmanager
def _named_kind(path: Path):
    """Yield the kind of the file at ``path`` (:func:`file_kind`); an error in the file
    then says which kind was assumed where the file has keys of another kind too."""
    kind, note = file_kind(read_yaml(path))
    try:
        yield kind
    except ConfigError as error:
        if not note:
            raise
        raise ConfigError(error.source, error.path, error.value, error.allowed + note) from None


#: How a file of each kind is used, said when it is given to a command for another kind.
USE = {"experiment": "run it with neurosim run", "chip": "name it in an experiment's chip field",
       "sweep": "run it with neurosim sweep"}


@contextlib.contextmanager
def read_as(path: Path, expected: str):
    """Run the block that reads the file at ``path`` as :data:`KINDS`' ``expected``; an error
    in it then says, where most of the file's keys are another kind's (a sweep given to
    ``neurosim run``), which kind the file is and what takes it."""
    try:
        yield
    except ConfigError as error:
        kind, _ = file_kind(read_yaml(path))
        if kind == expected:
            raise
        raise ConfigError(error.source, error.path, error.value,
                          f"{error.allowed} ({path} is {A_KIND[kind]} file, by its keys: "
                          f"{USE[kind]})") from None


def run_fields(args: argparse.Namespace) -> int:
    for path, default, doc in field_docs(KINDS[args.kind]):
        print(f"{path:40s} {default:20s} {doc}")
    return 0
