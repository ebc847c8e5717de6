"""``neurosim bench``: training and inference throughput, in samples/s and chip-samples/s.

Measures every combination of experiment configs x backends x chips x population sizes in
one run, as medians of interleaved repeats after warm-up (see :mod:`neurosim.bench`), and
writes ``bench.md`` (a table) and ``bench.json`` (with the machine: CPU, cores, GPU,
library versions, date) into ``--out``. Lists are comma-separated. ``--quick`` measures
populations 1,4 with 3 short repeats (about a minute); explicit options override it.

  neurosim bench --quick
  neurosim bench --backends numba,torch-cpu --chips ideal,rram_taox --populations 1,8,32
  neurosim bench --backends torch-cuda --fused-update off,on --populations 256
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from neurosim.bench import (BACKENDS, CONSTANT_STEP, FUSED_UPDATES, QUICK, Settings,
                            check_settings, parse_list, parse_positive, parse_seconds,
                            run_bench, unavailable, write_results)
from neurosim.errors import NeurosimError

DEFAULT_OUT = Path("benchmarks/results")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", description=__doc__,
                                   help="measure training and inference throughput",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Settings()
    parser.add_argument("--configs", metavar="FILES",
                        help=f"experiment YAML files (network, rule, optimizer, batch, "
                             f"dtype; default: {default.configs[0]})")
    parser.add_argument("--backends", metavar="NAMES",
                        help=f"of {', '.join(BACKENDS)} (default: all, those that cannot "
                             f"run here listed as skipped; one named here that cannot run "
                             f"is refused before anything is measured)")
    parser.add_argument("--chips", metavar="NAMES",
                        help=f"presets of hw_configs/, {CONSTANT_STEP} (ideal chip, "
                             f"constant-step devices, pulsed) or chip YAML files (default: "
                             f"{','.join(default.chips)})")
    parser.add_argument("--populations", metavar="SIZES",
                        help=f"chips simulated at once (default: "
                             f"{','.join(map(str, default.populations))})")
    parser.add_argument("--fused-update", metavar="SETTINGS",
                        help=f"torch backends, each of {', '.join(FUSED_UPDATES)}: a "
                             f"population step's optimizer and array update as Triton "
                             f"kernels (simulation.fused_update; e.g. off,on on a GPU "
                             f"measures both; default: auto)")
    parser.add_argument("--repeats", metavar="N",
                        help=f"interleaved timed repeats (default: {default.repeats})")
    parser.add_argument("--batch", metavar="N",
                        help="training batch per chip (default: each config's "
                             "train.batch_size)")
    parser.add_argument("--eval-batch", metavar="N",
                        help=f"inference batch per chip (default: {default.eval_batch})")
    parser.add_argument("--seconds", metavar="S",
                        help=f"about S seconds per timed repeat of each measurement (default: "
                             f"{default.repeat_seconds}; --quick: {QUICK.repeat_seconds})")
    parser.add_argument("--quick", action="store_true",
                        help=f"small settings (populations 1,4; 3 short repeats; inference "
                             f"batch {QUICK.eval_batch}, so not comparable with a full run)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak memory pass (it builds every workload once more "
                             "after the timings: at hundreds of chips, seconds each)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for bench.md and bench.json (default: {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=main)


def settings_from(args: argparse.Namespace) -> Settings:
    """The run's settings: ``--quick``'s or the defaults, with the options given."""
    changes = {}
    for option in ("configs", "backends", "chips"):
        text = getattr(args, option)
        if text is not None:
            values = parse_list(f"--{option}", text,
                                ", ".join(BACKENDS) if option == "backends" else None)
            changes[option] = tuple(map(Path, values)) if option == "configs" else values
    if args.fused_update is not None:
        changes["fused_updates"] = parse_list("--fused-update", args.fused_update,
                                              ", ".join(FUSED_UPDATES))
    if args.populations is not None:
        changes["populations"] = parse_positive("--populations", args.populations)
    for option in ("repeats", "batch", "eval_batch"):
        text = getattr(args, option)
        if text is not None:
            (changes[option],) = parse_positive(f"--{option.replace('_', '-')}", text,
                                                single=True)
    if args.seconds is not None:
        changes["repeat_seconds"] = parse_seconds("--seconds", args.seconds)
    if args.no_memory:
        changes["memory"] = False
    return dataclasses.replace(QUICK if args.quick else Settings(), **changes)


def check_requested_backends(settings: Settings) -> None:
    """Refuse, before anything is measured, a backend named in ``--backends`` that cannot
    run here (without ``--backends``, those are skipped and listed in bench.md)."""
    for name in settings.backends:
        why = unavailable(name)
        if why is not None:
            here = [other for other in BACKENDS if unavailable(other) is None]
            raise NeurosimError(f"--backends: {name!r}: {why}; allowed here: "
                                f"{', '.join(here)} (leave out --backends to measure every "
                                f"backend that runs here; bench.md lists what was measured "
                                f"and what was skipped)")


def main(args: argparse.Namespace) -> int:
    progress = None if args.quiet else (lambda text: print(text, flush=True))
    settings = settings_from(args)
    check_settings(settings)  # unknown names first, then what cannot run here
    if args.backends is not None:
        check_requested_backends(settings)
    result = run_bench(settings, progress)
    report = write_results(result, args.out)
    print(f"wrote {report} and {report.with_suffix('.json')}")
    return 0
