"""Running an experiment: every condition x seed into its own run folder, then reports.

Layout of an experiment folder::

    <out>/experiment.yaml              the experiment as resolved (overrides applied)
    <out>/<condition>/seed<k>/         one run: config.yaml, chip.yaml, metrics.jsonl,
                                       checkpoint.npz, summary.json, CSV curves, figures,
                                       report.md
    <out>/report.md, comparison.*      the comparison of all runs (when there are several):
                                       mean ± std over each condition's seeds

With ``population`` set, the runs are simulated as populations of chips
(:func:`neurosim.train.run_population`): all the conditions that share the chip, network,
rule and simulation in one (``population.across_conditions``, the default), or each
condition's seeds in one; every run into the same folder, as a run alone would write it.

A finished run (its ``summary.json`` exists and its config matches) is never recomputed on
``resume``; an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from neurosim.backends import check_available
from neurosim.config import (ChipConfig, ExperimentConfig, RunSpec, as_this_version,
                             expand_runs, read_yaml)
from neurosim.data import load_dataset
from neurosim.errors import CheckpointError, NeurosimError, writing
from neurosim.locking import FolderLock
from neurosim.memory import check_population_fits
from neurosim.report import RUN_REPORT, write_run_report, write_run_reports
from neurosim.compare import write_comparison
from neurosim.runio import (METRICS, SUMMARY, remove_leftover_temporaries, write_json,
                            write_text)
from neurosim.schema import differences_text, differing, to_plain
from neurosim.train import run_population, run_spec



def run_dir_of(out: Path, spec: RunSpec) -> Path:
    return out / spec.condition / f"seed{spec.seed}"


def _run_config_text(spec: RunSpec) -> tuple[str, str]:
    return (yaml.safe_dump(to_plain(spec.experiment), sort_keys=False),
            yaml.safe_dump(to_plain(spec.chip), sort_keys=False))


def configuration_differences(run_dir: Path, spec: RunSpec) -> list[str]:
    """How the run saved in ``run_dir`` differs from ``spec``'s experiment and chip, as
    ``file: field saved -> now`` lines (empty when it is the same run), compared as parsed by
    the current schema: a field added since (with its default) or a change of formatting is
    not a difference; a changed value, or a saved field the schema no longer knows, is."""
    differences = []
    for kind, name, now in ((ExperimentConfig, "config.yaml", spec.experiment),
                            (ChipConfig, "chip.yaml", spec.chip)):
        try:
            saved = as_this_version(kind, read_yaml(run_dir / name), str(run_dir / name))
        except (OSError, NeurosimError) as error:
            differences.append(f"{name}: cannot be read as this version's {kind.__name__} "
                               f"({' '.join(str(error).split())})")
            continue
        differences += [f"{name}: {field} {old!r} -> {new!r}"
                        for field, old, new in differing(saved, to_plain(now))]
    return differences


# What a folder neurosim wrote holds at its top (an experiment, a reproduction), or a run
# folder's record a few levels down (an interrupted experiment or reproduction).
OUTPUT_MARKERS = ("experiment.yaml", "results.json")
RUN_LOCK = "run.lock"  # held by a command writing into the folder (every one of them)
RUN_RECORD_DEPTH = 4


def looks_like_output(folder: Path) -> bool:
    """Whether ``folder`` is (or holds) neurosim output: one of :data:`OUTPUT_MARKERS` at its
    top, or a run's ``metrics.jsonl`` up to :data:`RUN_RECORD_DEPTH` levels down."""
    if any((folder / name).exists() for name in OUTPUT_MARKERS):
        return True
    return any(next(folder.glob("/".join(["*"] * depth + [METRICS])), None) is not None
               for depth in range(RUN_RECORD_DEPTH + 1))


def check_out_arguments(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse ``resume`` with ``overwrite``, and an output folder that is a file."""
    if resume and overwrite:
        raise NeurosimError("--resume and --overwrite exclude each other: continue the "
                            "folder, or replace it")
    if out.exists() and not out.is_dir():
        raise NeurosimError(f"{out}: output folder is a file")


def prepare_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Make the output folder ``out``: refused when it holds something and neither
    ``resume`` nor ``overwrite`` is given; ``overwrite`` deletes it first, only if it is
    neurosim's output (:func:`looks_like_output`), never any other folder; ``resume``
    deletes the half-written files of an interrupted command (the caller holds its lock
    and has checked the arguments: :func:`output_folder`)."""
    contents = [p for p in out.iterdir() if p.name != RUN_LOCK] if out.exists() else []
    if contents:
        if not (resume or overwrite):
            raise NeurosimError(f"{out}: output folder is not empty; pass --resume to "
                                f"continue it or --overwrite to replace it")
        if overwrite and not looks_like_output(out):
            raise NeurosimError(f"{out}: not a folder neurosim wrote (no "
                                f"{', '.join(OUTPUT_MARKERS)} and no run records): "
                                "--overwrite deletes only neurosim output; remove it "
                                "yourself or choose another --out")
    with writing(out):
        if overwrite:
            for path in contents:  # not the lock this command may hold
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        out.mkdir(parents=True, exist_ok=True)
    if resume:
        remove_leftover_temporaries(out)


def check_saved_configuration(spec: RunSpec, run_dir: Path) -> None:
    """Refuse to continue ``run_dir`` when it holds a run of another configuration."""
    config_path = run_dir / "config.yaml"
    differences = configuration_differences(run_dir, spec) if config_path.exists() else []
    if differences:
        raise CheckpointError(f"{config_path}: the saved run was made with a different "
                              f"configuration ({differences_text(differences)}); use a new "
                              "--out folder or --overwrite")


def _prepare(spec: RunSpec, run_dir: Path, resume: bool) -> None:
    """Write the run's configuration (on resume, after checking it is the saved one).

    ``config.yaml`` is written last: its presence says the run's configuration is saved
    (``chip.yaml`` too), so a process killed between the two files (a sweep's worker dies
    with its driver) leaves a folder that is continued, not one refused as another
    configuration's."""
    config_text, chip_text = _run_config_text(spec)
    config_path = run_dir / "config.yaml"
    if resume:
        check_saved_configuration(spec, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "chip.yaml", chip_text)
    write_text(config_path, config_text)


def _complete(run_dir: Path, summary: dict, run_report: bool) -> None:
    write_json(run_dir / SUMMARY, summary)
    if run_report:
        write_run_report(run_dir)


def run_one(spec: RunSpec, run_dir: Path, resume: bool, progress: bool,
            data_dir: str | None, run_report: bool = True) -> dict:
    """Run one condition/seed (or reuse/continue it on resume); writes its report unless
    ``run_report`` is false (large studies: the comparison still covers every run)."""
    _prepare(spec, run_dir, resume)
    summary = run_spec(spec, run_dir, resume=resume, progress=progress, data_dir=data_dir)
    _complete(run_dir, summary, run_report)
    return summary


def run_together(specs: list[RunSpec], run_dirs: list[Path], resume: bool,
                 data_dir: str | None,
                 on_error: Callable[[int, Exception], None] | None = None) -> list[dict | None]:
    """:func:`run_one` for runs that share their hardware, simulated as one population,
    without the runs' reports (the caller writes them). An error of one run is raised, or
    handed to ``on_error(index, error)`` while the others go on (its summary ``None``;
    :func:`neurosim.train.run_population`)."""
    prepared = []
    for k, (spec, run_dir) in enumerate(zip(specs, run_dirs)):
        try:
            _prepare(spec, run_dir, resume)
            prepared.append(k)
        except Exception as error:
            if on_error is None:
                raise
            on_error(k, error)
    summaries: list[dict | None] = [None] * len(specs)
    if not prepared:
        return summaries
    outcomes = run_population([specs[k] for k in prepared], [run_dirs[k] for k in prepared],
                              resume=resume, data_dir=data_dir,
                              on_error=on_error and (lambda i, error: on_error(prepared[i],
                                                                               error)))
    for k, summary in zip(prepared, outcomes):
        if summary is not None:
            _complete(run_dirs[k], summary, run_report=False)
            summaries[k] = summary
    return summaries


def population_members(runs: list[RunSpec], across_conditions: bool,
                       max_chips: int | None = None) -> list[list[int]]:
    """The runs (indices into ``runs``) of each population, in the order of their first
    run: runs that share :attr:`RunSpec.population_key` together (``across_conditions``),
    or each condition's runs together; in parts of at most ``max_chips`` runs."""
    keys: list = []
    groups: list[list[int]] = []
    for index, spec in enumerate(runs):
        key = spec.population_key if across_conditions else spec.condition
        if key not in keys:
            keys.append(key)
            groups.append([])
        groups[keys.index(key)].append(index)
    size = max_chips or len(runs)
    return [group[start:start + size] for group in groups
            for start in range(0, len(group), size)]


def run_experiment(experiment: ExperimentConfig, source: Path | None, out: Path,
                   resume: bool = False, overwrite: bool = False, progress: bool = False,
                   data_dir: str | None = None, run_reports: bool = True,
                   report_processes: int = 1) -> Path:
    """Run every condition x seed of ``experiment`` into ``out``; returns the report path.
    The runs' reports are written once every run is done, ``report_processes`` at a time
    (worker processes, :func:`neurosim.report.write_run_reports`; their figures take
    seconds each, while the runs themselves already use every core). ``out`` is locked
    meanwhile (:data:`RUN_LOCK`): a second command into it is refused at once rather than
    writing the same run records (a "resume after a crash" while the first still runs)."""
    out = Path(out)
    runs = expand_runs(experiment, source)
    check_available((spec.experiment.simulation for spec in runs), source)
    populations = (population_members(runs, experiment.population.across_conditions,
                                      experiment.population.max_chips)
                   if experiment.population is not None else [[i] for i in range(len(runs))])
    for members in populations:  # refused before the folder is touched
        check_population_fits([runs[i] for i in members])
    for name in dict.fromkeys(spec.experiment.data.dataset for spec in runs
                              if overwrite or not (run_dir_of(out, spec) / SUMMARY).is_file()):
        load_dataset(name, data_dir)  # so is missing data (cached for the runs)
    with output_folder(out, resume, overwrite, "neurosim run"):
        return _run_experiment(experiment, runs, populations, out, resume, progress, data_dir,
                               run_reports, report_processes)


@contextmanager
def output_folder(out: Path, resume: bool, overwrite: bool, what: str) -> Iterator[None]:
    """Hold ``out``'s lock (:data:`RUN_LOCK`, naming its holder ``what``) while the block
    writes into it, the folder prepared first (:func:`prepare_out_dir`): a second command
    into it, of any kind, is refused at once, and ``overwrite`` never deletes a folder
    that another command is writing."""
    check_out_arguments(out, resume, overwrite)
    with FolderLock(out / RUN_LOCK, what=what):
        prepare_out_dir(out, resume, overwrite)
        yield


def _run_experiment(experiment: ExperimentConfig, runs: list[RunSpec],
                    populations: list[list[int]], out: Path, resume: bool, progress: bool,
                    data_dir: str | None, run_reports: bool, report_processes: int) -> Path:
    run_dirs = [run_dir_of(out, spec) for spec in runs]
    if resume:  # every saved run checked before the folder's experiment.yaml is replaced
        for spec, run_dir in zip(runs, run_dirs):
            check_saved_configuration(spec, run_dir)
    write_text(out / "experiment.yaml", yaml.safe_dump(to_plain(experiment), sort_keys=False))
    if experiment.population is not None:
        for number, members in enumerate(populations, 1):
            specs = [runs[i] for i in members]
            if progress:
                conditions = ", ".join(dict.fromkeys(spec.condition for spec in specs))
                print(f"[{number}/{len(populations)}] population of {len(specs)} chips "
                      f"({conditions}) -> {out}", flush=True)
            run_together(specs, [run_dirs[i] for i in members], resume, data_dir)
    else:
        for index, (spec, run_dir) in enumerate(zip(runs, run_dirs), 1):
            if progress:
                print(f"[{index}/{len(runs)}] {spec.condition} seed {spec.seed} -> {run_dir}",
                      flush=True)
            run_one(spec, run_dir, resume, progress, data_dir, run_report=False)
    if run_reports:
        if progress:
            print(f"writing the reports of {len(run_dirs)} run(s)", flush=True)
        write_run_reports(run_dirs, report_processes)
    if len(run_dirs) == 1 and run_reports:
        return run_dirs[0] / RUN_REPORT
    return write_comparison(run_dirs, out, title=experiment.name)
