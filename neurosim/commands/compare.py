"""``neurosim compare RUN_DIR...``: compare finished runs across conditions and seeds.

Each RUN_DIR is a run folder (it holds ``summary.json``), an experiment folder (every
``<condition>/seed<k>/summary.json`` below it is used) or a condition folder (its
``seed<k>/summary.json``). Writes the tables, paired t-tests and figures of
:mod:`neurosim.compare` into ``--out`` and prints the report path.

``--out`` defaults to the deepest folder holding every run's condition folder: the experiment
folder when the runs come from one experiment (where ``neurosim run`` writes its comparison
too), else ``./comparison`` when that folder would be the filesystem root. A default folder
whose comparison covers runs this one leaves out (the experiment's own, when comparing some
of its conditions) is not replaced: the command asks for ``--out``.

The output folder is locked while the comparison is written (``run.lock``, the lock of
every command that writes a folder: :mod:`neurosim.locking`): a comparison into the folder
of an experiment that ``neurosim run`` is still running (which writes its own comparison
there when its runs are done), or of a sweep, is refused at once. The runs read are those
finished (their ``summary.json`` is written last and atomically), so a comparison written
elsewhere while an experiment runs is of its finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from neurosim.errors import NeurosimError
from neurosim.runio import SUMMARY



def register(subparsers) -> None:
    parser = subparsers.add_parser("compare", description=__doc__,
                                   help="compare finished runs (tables, t-tests, figures)",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="a run, condition or experiment folder (repeatable)")
    parser.add_argument("--out", type=Path, help="output folder (default: the runs' common folder)")
    parser.add_argument("--title", help="report title (default: 'Comparison: <output folder name>')")
    parser.set_defaults(func=main)


def _seed_order(run: Path) -> tuple:
    seed = run.name.removeprefix("seed")
    return (run.parent.name, int(seed) if seed.isdigit() else float("inf"), seed)


def find_runs(folder: Path) -> tuple[list[Path], list[Path]]:
    """The finished run folders: ``folder`` itself, or the ``<condition>/seed<k>`` run
    folders below it (an experiment folder), or its ``seed<k>`` folders (a condition
    folder); and the run folders there without a ``summary.json`` (failed, interrupted or
    still running), which the comparison names and leaves out."""
    if not folder.is_dir():
        raise NeurosimError(f"{folder}: no such folder")
    if (folder / SUMMARY).is_file():
        return [folder], []
    pattern = "*/seed*" if any(folder.glob(f"*/seed*/{SUMMARY}")) else "seed*"
    folders = sorted((path for path in folder.glob(pattern) if path.is_dir()), key=_seed_order)
    runs = [path for path in folders if (path / SUMMARY).is_file()]
    if not runs:
        raise NeurosimError(f"{folder}: no runs found (expected {SUMMARY} in it, or "
                            f"<condition>/seed<k>/{SUMMARY} below it)")
    return runs, [path for path in folders if path not in runs]


def runs_in(folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """:func:`find_runs` of every folder of ``folders``: the finished run folders and the
    unfinished ones, each once, in order."""
    found = [find_runs(folder) for folder in folders]
    return (list(dict.fromkeys(d for finished, _ in found for d in finished)),
            list(dict.fromkeys(d for _, left in found for d in left)))


def default_out(run_dirs: list[Path]) -> Path:
    """The common folder of the runs' condition folders, else ``./comparison``."""
    parents = [str(d.resolve().parent) for d in run_dirs]
    common = Path(os.path.commonpath(parents))
    if common.parent == common or (common / SUMMARY).exists():
        return Path("comparison")
    return common


def compared_runs(out: Path) -> set[Path]:
    """The run folders of the comparison already in ``out`` (its ``comparison.json``;
    none when there is none or it cannot be read)."""
    try:
        saved = json.loads((out / "comparison.json").read_text())
        return {(out / run).resolve() for condition in saved["conditions"].values()
                for run in condition["runs"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def main(args: argparse.Namespace) -> int:
    from neurosim.compare import write_comparison
    from neurosim.locking import FolderLock
    from neurosim.runner import RUN_LOCK

    run_dirs, unfinished = runs_in(args.run_dirs)
    out = args.out or default_out(run_dirs)
    with FolderLock(out / RUN_LOCK, what="neurosim compare"):
        left_out = compared_runs(out) - {d.resolve() for d in run_dirs}
        if args.out is None and left_out:
            raise NeurosimError(
                f"{out}: holds a comparison that also covers {len(left_out)} run(s) not "
                f"given here (e.g. {sorted(left_out)[0]}); comparing these alone would replace "
                "it: give --out")
        title = args.title or f"Comparison: {out.resolve().name}"
        report = write_comparison(run_dirs, out, title=title, unfinished=unfinished)
    print(f"report: {report}")
    return 0
