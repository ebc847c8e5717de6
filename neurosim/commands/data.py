"""``neurosim data``: list, verify and download datasets.

* ``neurosim data list``: each dataset's classes, split sizes and whether its files are
  present in the data directory (existence only; no hashing).
* ``neurosim data verify [NAME...]``: checksum every file, hashed again (loading a dataset
  reuses a file's recorded digest while its size and mtime are unchanged; verify does not,
  so it sees a change that kept them); exit 0 if all are intact, 1 otherwise, with one line
  per file (a bundled dataset, which has no files, one line saying so).
* ``neurosim data fetch [NAME...]``: download missing or corrupt files; exit 0 if every
  dataset ends up intact, 1 otherwise.

Without names, ``verify`` and ``fetch`` cover every dataset. ``--data-dir`` overrides
``$NEUROSIM_DATA`` and the per-user cache directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurosim.data import store
from neurosim.data.registry import DATASET_NAMES, SPECS, get_spec

EXIT_OK, EXIT_PROBLEM = 0, 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its ``list`` / ``verify`` / ``fetch`` sub-commands."""
    parser = subparsers.add_parser("data", help="list, verify and download datasets",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    for action, func, help_text in (
        ("list", _list, "show datasets and whether their files are present"),
        ("verify", _verify, "checksum dataset files (exit 1 if any is missing or corrupt)"),
        ("fetch", _fetch, "download missing or corrupt dataset files"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--data-dir", help="data directory (default: $NEUROSIM_DATA, else the user cache)")
        if action != "list":
            sub.add_argument("names", nargs="*", metavar="NAME", help=f"datasets (default: all of {', '.join(DATASET_NAMES)})")
        sub.set_defaults(func=func)


def _names(args: argparse.Namespace) -> tuple[str, ...]:
    """The requested dataset names (all by default); :class:`DataError` for an unknown one."""
    for name in args.names:
        get_spec(name)
    return tuple(args.names) or DATASET_NAMES


def _presence(name: str, root: Path) -> str:
    """``bundled``, ``present``, ``missing`` or ``partial (...)`` for dataset ``name`` under ``root``."""
    spec = SPECS[name]
    if not spec.files:
        return "bundled"
    present = sum(store.file_path(spec, file, root).is_file() for file in spec.files)
    if present == len(spec.files):
        return "present"
    return "missing" if present == 0 else f"partial ({len(spec.files) - present} of {len(spec.files)} files missing)"


def _list(args: argparse.Namespace) -> int:
    root = store.resolve_data_dir(args.data_dir)
    print(f"data directory: {root}")
    print(f"{'name':<14} {'classes':>7} {'train':>6} {'test':>6}  status")
    for name, spec in SPECS.items():
        print(f"{name:<14} {spec.n_classes:>7} {spec.n_train:>6} {spec.n_test:>6}  {_presence(name, root)}")
    return EXIT_OK


def _bundled(name: str) -> bool:
    """Whether dataset ``name`` has no files of its own (it comes with a library) and says
    so, as one line: it has nothing to verify or fetch."""
    if SPECS[name].files:
        return False
    print(f"{name:<14} bundled  (no files: it comes with its library)")
    return True


def _verify(args: argparse.Namespace) -> int:
    all_ok = True
    for name in _names(args):
        if _bundled(name):
            continue
        for status in store.verify(name, args.data_dir, rehash=True):
            print(f"{name:<14} {status.describe()}")
            all_ok &= status.ok
    return EXIT_OK if all_ok else EXIT_PROBLEM


def _fetch(args: argparse.Namespace) -> int:
    all_ok = True
    for name in _names(args):
        if _bundled(name):
            continue
        try:
            statuses = store.fetch(name, args.data_dir)
        except store.MissingDataError as error:
            print(f"{name:<14} failed: {error}", file=sys.stderr)
            all_ok = False
            continue
        for status in statuses:
            print(f"{name:<14} {status.describe()}")
    return EXIT_OK if all_ok else EXIT_PROBLEM
