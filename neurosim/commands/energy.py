"""``neurosim energy RUN_DIR...``: the energy ledgers of finished runs, one table each.

Each RUN_DIR is a run folder or an experiment or condition folder (as for ``neurosim
compare``). For every run, prints its ``summary.json`` ledger (see
:func:`neurosim.energy.ledger_summary`): total energy, energy per phase and per component,
programming pulses, bytes moved, weight-transport bytes, the activation buffer a training
step needs (runs since it was recorded), and the cost of reaching the target test
accuracy. ``--csv FILE`` also writes one row per run (energies in pJ).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from neurosim.commands.compare import runs_in
from neurosim.energy import COMPONENTS, TOTALS, bytes_text, energy_text
from neurosim.errors import NeurosimError, writing
from neurosim.ledger import COUNTER_INDEX, PHASES, Ledger, bytes_moved
from neurosim.runio import SUMMARY


def register(subparsers) -> None:
    parser = subparsers.add_parser("energy", description=__doc__,
                                   help="compare the energy ledgers of finished runs",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="a run, condition or experiment folder (repeatable)")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write one row per run")
    parser.set_defaults(func=main)


def read_ledger(run_dir: Path) -> dict:
    """The ``"ledger"`` entry of a run folder's ``summary.json``."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise NeurosimError(f"{run_dir}: cannot read {SUMMARY}: {error}")
    if not isinstance(summary.get("ledger"), dict):
        raise NeurosimError(f"{run_dir}: {SUMMARY} has no energy ledger (run by a neurosim "
                            "without one?)")
    return summary["ledger"]


def run_row(run_dir: Path, ledger: dict) -> dict:
    """One run's figures (energies in pJ), in the column order of the CSV."""
    energy = ledger["energy_pj"]
    counts = Ledger.from_json(ledger["counts"]).counts
    target = ledger.get("to_target") or {}
    return {
        "run": str(run_dir),
        "energy_total_pj": energy["total"],
        **{f"energy_{phase}_pj": sum(energy["phases"][phase].values()) for phase in PHASES},
        **{f"energy_{component}_pj": energy["components"][component]
           for component in COMPONENTS},
        "pulses_up": int(counts[..., COUNTER_INDEX["pulses_up"]].sum()),
        "pulses_down": int(counts[..., COUNTER_INDEX["pulses_down"]].sum()),
        "bytes": int(np.sum(bytes_moved(counts))),
        "bytes_weight_transport": int(counts[..., COUNTER_INDEX["bytes_weight_transport"]].sum()),
        "activation_buffer_bytes": (ledger.get("activation_buffer") or {}).get("bytes"),
        "target_accuracy": target.get("target"),
        "target_reached": target.get("reached"),
        "target_step": target.get("step"),
        **{f"to_target_{key}": target.get(key) for key in TOTALS},
    }


def run_table(row: dict) -> str:
    """The text table of one run."""
    lines = [f"== {row['run']} ==", f"{'energy':28s}{energy_text(row['energy_total_pj'])}"]
    lines += [f"  {'phase ' + phase:26s}{energy_text(row[f'energy_{phase}_pj'])}"
              for phase in PHASES]
    lines += [f"  {'component ' + component:26s}{energy_text(row[f'energy_{component}_pj'])}"
              for component in COMPONENTS]
    lines += [f"{'pulses (up / down)':28s}{row['pulses_up']:,} / {row['pulses_down']:,}",
              f"{'bytes moved':28s}{bytes_text(row['bytes'])}",
              f"{'  weight transport':28s}{bytes_text(row['bytes_weight_transport'])}"]
    if row["activation_buffer_bytes"] is not None:
        lines.append(f"{'activation buffer':28s}{bytes_text(row['activation_buffer_bytes'])}")
    if row["target_accuracy"] is not None:
        label = f"to {row['target_accuracy']:.0%} test accuracy"
        if row["target_reached"]:
            lines.append(f"{label:28s}{energy_text(row['to_target_energy_pj'])}, "
                         f"{row['to_target_pulses']:,} pulses, "
                         f"{bytes_text(row['to_target_bytes'])} (step {row['target_step']})")
        else:
            lines.append(f"{label:28s}not reached")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    run_dirs, unfinished = runs_in(args.run_dirs)
    if unfinished:
        print("left out, without a summary.json (failed, interrupted or still running): "
              + ", ".join(map(str, unfinished)), file=sys.stderr)
    rows = [run_row(run_dir, read_ledger(run_dir)) for run_dir in run_dirs]
    print("\n\n".join(run_table(row) for row in rows))
    if args.csv:
        with writing(args.csv), open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"csv: {args.csv}")
    return 0
