"""A sweep file, validated and resolved into trials.

A sweep names a base experiment and varies it::

    name: sweep_preconditioning          # the default output folder is runs/<name>
    experiment: quickstart.yaml          # the base experiment, relative to the sweep file
    overrides: {train.epochs: 2}         # dotted overrides applied to every trial
    conditions:                          # the strategies (default: the experiment's)
      fa: {rule: fa}
      fa_noise: {rule: fa, precondition.enabled: true}
    grid: {chip: [ideal, rram_taox]}     # every combination of these values is a cell
    cases: [{optimizer.lr: 1.0e-3}]      # and/or listed override sets, each crossed with the grid
    seeds: [0, 1, 2]                     # default: the experiment's
    baseline: fa                         # what report.md tests the other conditions against
    population: {max_chips: 256}         # optional: trials simulated at once (below)

A **cell** is one case combined with one point of the grid; a **trial** is one condition x
seed of a cell, and runs into ``<out>/<cell>/<condition>/seed<k>/`` exactly as ``neurosim
run`` lays out an experiment (so ``<out>/<cell>`` is an experiment folder). Within a cell,
conditions with the same seed share their initial weights and feedback (paired).

With ``population``, the trials that share their chip, network, rule and simulation
(:attr:`neurosim.config.RunSpec.population_key`: across cells, conditions and seeds, e.g. a
grid of learning rates or preconditioning choices on one chip) run as populations of at
most ``max_chips`` chips simulated at once (:func:`neurosim.train.run_population`), one
Dask task each; every trial still writes its own folder, as a run alone would. That is how
workers with a GPU (``simulation.device: cuda``) are used; on CPU workers the shipped sweep
gains nothing from it (``docs/scaling.md``), and a population needs at least as many tasks as
workers there.

A cell's folder name is its overrides, ``key=value`` joined by ``,`` in file order (cases'
keys first), e.g. ``chip=rram_taox,optimizer.lr=0.001``; ``base`` when nothing is varied.
A value that is not plain text (a list, a mapping, characters outside ``A-Za-z0-9._+-``)
or a name over 120 characters is shortened and suffixed with a hash of the overrides, so
names are deterministic and distinct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurosim.config import (RunSpec, apply_overrides, build_experiment, check_folder_name,
                             expand_runs, owning_override, read_yaml)
from neurosim.errors import ConfigError
from neurosim.rng import MAX_SEED
from neurosim.runner import run_dir_of
from neurosim.schema import build, spec, yaml11_number

RESERVED = ("conditions", "seeds", "seed")  # set by the sweep's own fields
MAX_NAME = 120
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.]+")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._+-]+")


def _check_overrides(source: str, path: str, overrides: Mapping) -> None:
    for key in overrides:
        if not isinstance(key, str) or not key:
            raise ConfigError(source, path, key, "keys must be dotted field paths")
        if key.split(".")[0] in RESERVED:
            raise ConfigError(source, f"{path}.{key}", overrides[key],
                              f"set {key.split('.')[0]} with the sweep's own field")


@dataclass(frozen=True)
class SweepPopulationConfig:
    """Trials simulated at once as populations of chips (see the module docstring)."""

    max_chips: int = spec(256, ge=1, doc="chips of one population (one Dask task): the "
                                         "trials that share the hardware, in chunks of this "
                                         "many")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep file (see :mod:`neurosim.sweep_plan`)."""

    name: str = spec(doc="sweep name; the default output folder is runs/<name>")
    experiment: str = spec(doc="base experiment YAML, relative to the sweep file")
    overrides: dict | None = spec(None, doc="dotted overrides applied to every trial "
                                            "(e.g. train.epochs: 2)")
    conditions: dict | None = spec(None, doc="strategies compared within each cell: name -> "
                                             "dotted overrides, like an experiment's "
                                             "conditions (default: the experiment's)")
    grid: dict | None = spec(None, doc="dotted key -> list of values; every combination of "
                                       "values is a cell")
    cases: tuple[dict, ...] | None = spec(None, min_len=1,
                                          doc="listed cells: mappings of dotted overrides, "
                                              "each crossed with the grid")
    seeds: tuple[int, ...] | None = spec(None, ge=0, le=MAX_SEED, min_len=1,
                                         doc="seeds of every condition, 0 .. 2**64 - 1 "
                                             "(default: the experiment's)")
    baseline: str | None = spec(None, doc="condition that report.md tests the others "
                                          "against (default: the first)")
    population: SweepPopulationConfig | None = spec(
        None, doc="run the trials that share chip, network, rule and simulation as "
                  "populations of chips simulated at once, one Dask task each: "
                  "{max_chips: N}")

    def check(self, source: str, path: str) -> None:
        check_folder_name(source, "name", self.name, "the sweep's name")  # runs/<name>
        if self.conditions is not None and not self.conditions:
            raise ConfigError(source, "conditions", self.conditions,
                              "at least one condition (leave the field out for the "
                              "experiment's conditions)")
        _check_overrides(source, "overrides", self.overrides or {})
        for key, values in (self.grid or {}).items():
            _check_overrides(source, "grid", {key: values})
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ConfigError(source, f"grid.{key}", values,
                                  "must be a non-empty list of values")
        for index, case in enumerate(self.cases or ()):
            _check_overrides(source, f"cases[{index}]", case)
            shared = sorted(set(case) & set(self.grid or {}))
            if shared:
                raise ConfigError(source, f"cases[{index}].{shared[0]}", case[shared[0]],
                                  "is also a grid key; vary it in one place")


@dataclass(frozen=True)
class Cell:
    """One combination of a case and a grid point: its folder name, its overrides, and
    where the sweep file sets each field it sets for the cell (``origins``: key ->
    ``cases[0].optimizer.lr``, ``grid.chip[1]`` or ``overrides.train.epochs``)."""

    name: str
    overrides: dict
    origins: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: a condition and seed of a cell."""

    cell: Cell
    spec: RunSpec

    @property
    def id(self) -> str:
        """``<cell>/<condition>/seed<k>``: the trial's folder relative to the sweep folder."""
        return f"{self.cell.name}/{self.spec.condition}/seed{self.spec.seed}"

    def run_dir(self, out: Path) -> Path:
        return run_dir_of(Path(out) / self.cell.name, self.spec)


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: its file, its base experiment, cells, conditions and trials."""

    config: SweepConfig
    source: Path
    experiment_path: Path
    cells: tuple[Cell, ...]
    conditions: tuple[str, ...]
    baseline: str
    trials: tuple[Trial, ...]


def _value_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cell_name(overrides: Mapping[str, Any]) -> str:
    """The folder name of a cell (see the module docstring)."""
    if not overrides:
        return "base"
    parts = [(key, _value_text(value)) for key, value in overrides.items()]
    name = ",".join(f"{key}={text}" for key, text in parts)
    plain = all(_PLAIN_KEY.fullmatch(key) and _PLAIN_VALUE.fullmatch(text) for key, text in parts)
    if plain and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(json.dumps(list(overrides.items()), sort_keys=True,
                                     default=str).encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9._+=,-]+", "_", name)[:MAX_NAME - 11].rstrip("_")
    return f"{readable}-{digest}"


def _same_value_key(value: Any) -> str:
    """What a value means, for finding repeats: ``1e-3`` (text to PyYAML) is 0.001."""
    return json.dumps(yaml11_number(value), sort_keys=True, default=str)


def _cells(config: SweepConfig, source: str) -> tuple[Cell, ...]:
    grid = config.grid or {}
    for key, values in grid.items():
        seen = set()
        for value in values:
            meaning = _same_value_key(value)
            if meaning in seen:
                raise ConfigError(source, f"grid.{key}", list(values),
                                  f"repeats the value {yaml11_number(value)!r}: each value "
                                  "once (equal numbers written differently are one value)")
            seen.add(meaning)
    points = list(itertools.product(*(enumerate(values) for values in grid.values())))
    cells: dict[str, Cell] = {}  # by what a cell's overrides mean
    named: dict[str, Cell] = {}  # by its folder name
    for index, case in enumerate(config.cases or ({},)):
        for point in points:
            overrides = {**case, **{key: value for key, (_, value) in zip(grid, point)}}
            origins = {**{key: f"cases[{index}].{key}" for key in case},
                       **{key: f"grid.{key}[{at}]" for key, (at, _) in zip(grid, point)}}
            origins.update({key: f"overrides.{key}" for key in config.overrides or {}
                            if key not in origins})  # after the cell's own, which win
            meaning = json.dumps({k: _same_value_key(v) for k, v in overrides.items()},
                                 sort_keys=True)
            name = cell_name(overrides)
            same = cells.get(meaning) or named.get(name)  # the same values, or folder
            if same is not None:
                raise ConfigError(source, f"cases[{index}]", case,
                                  f"repeats the cell {same.name}")
            cells[meaning] = named[name] = Cell(name, overrides, origins)
    return tuple(cells.values())


def _base_data(config: SweepConfig, experiment_path: Path, source: str) -> dict:
    data = apply_overrides(read_yaml(experiment_path), list((config.overrides or {}).items()),
                           source, "overrides.")
    if config.conditions is not None:
        data["conditions"] = dict(config.conditions)
    if config.seeds is not None:
        data["seeds"] = list(config.seeds)
    return data


def _cell_runs(data: dict, cell: Cell, experiment_path: Path, source: str,
               sweep_conditions: bool) -> list[RunSpec]:
    """The runs of one cell, each validated (:func:`_named_in_sweep` names an error)."""
    where = f"{source} (cell {cell.name})"
    try:
        experiment = build_experiment(
            apply_overrides(data, list(cell.overrides.items()), where), where)
        return expand_runs(experiment, experiment_path)
    except ConfigError as error:
        raise _named_in_sweep(error, cell, str(experiment_path), source,
                              sweep_conditions) from None


def _named_in_sweep(error: ConfigError, cell: Cell, experiment: str, source: str,
                    sweep_conditions: bool) -> ConfigError:
    """An error in a cell's runs, named where the sweep file gives what is wrong, with the
    cell as its context: a field the cell's case, grid point or the sweep's overrides set,
    as ``cases[i].<field>``, ``grid.<field>[j]`` or ``overrides.<field>``; a field a
    condition of the sweep file
    (``sweep_conditions``) sets, as ``conditions.<name>.<field>``; any other field with its
    condition as context too."""
    cell_source = f"{source} (cell {cell.name})"
    condition = re.fullmatch(rf"{re.escape(experiment)} \(condition (.+)\)", error.source)
    where = f"{cell_source[:-1]}, condition {condition[1]})" if condition else cell_source
    key = owning_override(error.path, cell.origins)
    if key is not None and (error.source in (cell_source, experiment) or condition):
        return ConfigError(where, cell.origins[key] + error.path[len(key):], error.value,
                           error.allowed)
    if error.source.startswith(source):
        return error
    own_condition = error.source == experiment and error.path.startswith("conditions.")
    if sweep_conditions and (own_condition or condition):
        return ConfigError(where, error.path, error.value, error.allowed)
    return ConfigError(f"{cell_source}, {error.source}", error.path, error.value, error.allowed)


def load_sweep(path: str | Path) -> SweepPlan:
    """Parse and validate a sweep file and every one of its trials (nothing runs)."""
    path = Path(path)
    source = str(path)
    config = build(SweepConfig, read_yaml(path), source)
    experiment_path = path.parent / config.experiment
    if not experiment_path.is_file():
        raise ConfigError(source, "experiment", config.experiment,
                          f"must be an experiment YAML relative to the sweep file "
                          f"({experiment_path} does not exist)")
    data = _base_data(config, experiment_path, source)
    try:
        base = build_experiment(data, f"{experiment_path} (with the overrides of {source})")
    except ConfigError as error:
        key = owning_override(error.path, config.overrides or {})
        if key is not None:
            raise ConfigError(source, f"overrides.{error.path}", error.value,
                              error.allowed) from None
        own = {"conditions": config.conditions, "seeds": config.seeds}  # the sweep's fields
        if own.get(error.path.split(".")[0]) is not None:
            raise ConfigError(source, error.path, error.value, error.allowed) from None
        raise
    conditions = tuple(base.conditions or {"default": {}})
    baseline = config.baseline or conditions[0]
    if baseline not in conditions:
        raise ConfigError(source, "baseline", baseline,
                          f"must be one of the conditions: {', '.join(conditions)}")
    cells = _cells(config, source)
    trials = tuple(Trial(cell, run) for cell in cells
                   for run in _cell_runs(data, cell, experiment_path, source,
                                         config.conditions is not None))
    return SweepPlan(config, path, experiment_path, cells, conditions, baseline, trials)


def with_population(plan: SweepPlan, max_chips: int) -> SweepPlan:
    """``plan`` with its trials run as populations of at most ``max_chips`` chips (the
    command line's ``--population-chips``; the trials are the same)."""
    config = dataclasses.replace(plan.config, population=SweepPopulationConfig(max_chips))
    return dataclasses.replace(plan, config=config)
