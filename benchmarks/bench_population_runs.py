"""Benchmark: whole runs, one population of 16 chips against 16 single-chip runs (Numba).

Issue 5's CPU target compares a population of 16 chips with "16 sequential single-chip
runs". ``bench_population.py`` compares training *steps*; this compares what a user
waits for: complete ``neurosim run`` runs of the paper's MNIST setting (FA, [784, 100,
10], batch 64, one epoch of the 60,000 training images, the default evaluation points:
test set, training and noise probes, alignment, effective rank, gradient probe; no OOD
sets and no run reports, the same for every way), seeds 0..15 on three chips: the ideal
chip (Adam, lr 1e-4), ``constant_step`` devices (128 levels) programmed by ``pulsed``
updates (Adam, lr 1e-4) and by ``stochastic`` in-array updates (BL 31, plain SGD, lr 0.01).

Ways, each from a fresh output folder, in interleaved repeats after a warm-up:

* ``separate``: one ``neurosim run`` of the 16 seeds without a population
  (:func:`neurosim.runner.run_experiment`): the runs one after another in one process;
* ``population``: the same command with ``population: {seeds: [0, ..., 15]}``: one
  population of 16 chips, every run folder what the separate run writes (checked here:
  every run's ``metrics.jsonl`` byte-identical between the two ways);
* ``commands`` (``--commands``): 16 ``neurosim run`` commands of one seed each, one after
  another, each its own process (Python start, imports, loading Numba's cached kernels and
  the data): separate runs as a shell loop makes them.

Reported per chip and way: the median wall time of the whole command, chip-samples/s of
data training over that wall time (16 x 60,000 / seconds), and the seconds the runs spent
in training steps (their ``summary.json``; a population's chips share their step calls'
time, so its figure is one chip's). Writes
``benchmarks/results/population_runs_2core.{json,md}`` with the machine description.

    .venv/bin/python benchmarks/bench_population_runs.py [--repeats N] [--chips M]
        [--commands] [--epochs E]
    .venv/bin/python benchmarks/bench_population_runs.py --profile

``--profile`` measures nothing else: it runs the ideal chip's two in-process ways under
cProfile (``--repeats`` interleaved runs each, after a warm-up on MNIST that loads the data)
and prints where their time goes, by part of a run (:data:`PARTS`), as medians.
"""

from __future__ import annotations

import argparse
import cProfile
import filecmp
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from neurosim.bench import constant_step_chip, machine
from neurosim.config import HW_CONFIG_DIR, ExperimentConfig, load_chip
from neurosim.runner import run_experiment
from neurosim.schema import build, to_plain

TARGET = 1.5
RESULTS = Path(__file__).resolve().parent / "results"
ADAM = {"name": "adam", "lr": 1e-4}
SGD = {"name": "sgd", "lr": 0.01}  # in-array updates: plain SGD (device_step.md's rate)
TRAINING_IMAGES = 60_000  # MNIST's training set: the samples of one epoch


def experiment(chip_file: Path, optimizer: dict, seeds: list[int], epochs: int,
               dataset: str = "mnist") -> ExperimentConfig:
    return build(ExperimentConfig, {
        "name": "population_runs", "chip": str(chip_file),
        "network": {"dims": [784, 100, 10], "activation": "relu"}, "rule": "fa",
        "optimizer": optimizer, "data": {"dataset": dataset},
        "train": {"epochs": epochs, "batch_size": 64}, "evaluation": {"ood": []},
        "seeds": seeds, "simulation": {"backend": "numba"}}, "bench_population_runs")


def write_chips(folder: Path) -> dict[str, tuple[Path, dict]]:
    """The three chips as YAML files (an experiment names its chip by preset or path)."""
    chips = {"ideal": (load_chip(HW_CONFIG_DIR / "ideal.yaml"), ADAM),
             "constant_step, pulsed": (constant_step_chip(0.0), ADAM),
             "constant_step, stochastic": (constant_step_chip(0.0, "stochastic"), SGD)}
    files = {}
    for number, (name, (chip, optimizer)) in enumerate(chips.items()):
        path = folder / f"chip{number}.yaml"
        path.write_text(yaml.safe_dump(to_plain(chip), sort_keys=False))
        files[name] = (path, optimizer)
    return files


def run_separate(config: ExperimentConfig, out: Path) -> None:
    run_experiment(config, None, out, overwrite=True, run_reports=False)


def run_population(config: ExperimentConfig, out: Path) -> None:
    fields = {key: value for key, value in to_plain(config).items() if key != "seeds"}
    together = build(ExperimentConfig, {**fields, "population": {"seeds": list(config.seeds)}},
                     "bench_population_runs")
    run_experiment(together, None, out, overwrite=True, run_reports=False)


def run_commands(config: ExperimentConfig, out: Path) -> None:
    """One ``neurosim run`` process per seed, one after another."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for seed in config.seeds:
        path = out / f"seed{seed}.yaml"
        path.write_text(yaml.safe_dump({**to_plain(config), "seeds": [seed]}, sort_keys=False))
        subprocess.run([sys.executable, "-m", "neurosim", "run", str(path), "--quiet",
                        "--no-run-reports", "--out", str(out / f"seed{seed}")], check=True,
                       stdout=subprocess.DEVNULL)


WAYS = {"separate": run_separate, "population": run_population, "commands": run_commands}


def run_folders(out: Path, way: str) -> list[Path]:
    """The run folders a way wrote, in seed order."""
    pattern = "seed*/default/seed*" if way == "commands" else "default/seed*"
    return sorted(out.glob(pattern), key=lambda p: int(p.name.removeprefix("seed")))


def train_seconds(folders: list[Path], way: str) -> float:
    """Seconds a way's runs spent in training steps (a population's: one chip's, the time
    of the step calls its chips shared)."""
    seconds = [json.loads((f / "summary.json").read_text())["seconds"]["train"]
               for f in folders]
    return max(seconds) if way == "population" else sum(seconds)


def identical_metrics(reference: list[Path], other: list[Path]) -> bool:
    return len(reference) == len(other) and all(
        filecmp.cmp(a / "metrics.jsonl", b / "metrics.jsonl", shallow=False)
        for a, b in zip(reference, other))


# Parts of a run: (file, function) whose cumulative time is the part's, per way.
PARTS = {
    "training steps": {"population": ("cohorts.py", "step"), "separate": ("train.py", "step")},
    "measurement passes": {"population": ("evaluation.py", "measure_population"),
                           "separate": ("train.py", "_answer")},
    "per-chip scores and spectra": ("train.py", "_data_record"),
    "final analyses": ("train.py", "_finish"),
    "noise probe sets": ("precondition.py", "probe"),
    "comparison report and plots": ("compare.py", "write_comparison"),
}


def profile_ways(config: ExperimentConfig, warm_up: ExperimentConfig, scratch: Path,
                 repeats: int) -> str:
    """A markdown table: seconds of each of :data:`PARTS` in a profiled run of the separate
    and the population way (cumulative cProfile times, medians of ``repeats`` interleaved
    runs after a warm-up of each way; the whole call last)."""
    seconds = {"population": [], "separate": []}
    for way in seconds:
        WAYS[way](warm_up, scratch / "warm_up" / way)
    for repeat in range(repeats):
        for way in (("population", "separate") if repeat % 2 == 0
                    else ("separate", "population")):
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.runcall(WAYS[way], config, scratch / way)
            parts = {"whole command": time.perf_counter() - start}
            stats = pstats.Stats(profiler).stats
            for part, where in PARTS.items():
                file, function = where[way] if isinstance(where, dict) else where
                parts[part] = sum(entry[3] for (path, _, name), entry in stats.items()
                                  if name == function and path.endswith("/" + file))
            seconds[way].append(parts)
    rows = [f"| {part} | " + " | ".join(
                f"{statistics.median(p[part] for p in seconds[way]):.1f}"
                for way in ("population", "separate")) + " |"
            for part in [*PARTS, "whole command"]]
    return "\n".join(["| part of the run (s) | population | separate |", "|---|---|---|", *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chips", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--commands", action="store_true",
                        help="also time one neurosim run process per seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", action="store_true",
                        help="only profile the ideal chip's two in-process ways")
    args = parser.parse_args()
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="population_runs_") as scratch:
            chip_file, optimizer = write_chips(Path(scratch))["ideal"]
            seeds = list(range(args.chips))
            print(profile_ways(experiment(chip_file, optimizer, seeds, args.epochs),
                               experiment(chip_file, optimizer, seeds[:2], 1),
                               Path(scratch), args.repeats))
        return
    ways = [way for way in WAYS if way != "commands" or args.commands]
    seeds = list(range(args.chips))
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="population_runs_") as scratch:
        scratch = Path(scratch)
        for name, (chip_file, optimizer) in write_chips(scratch).items():
            config = experiment(chip_file, optimizer, seeds, args.epochs)
            warm_up = experiment(chip_file, optimizer, seeds[:2], 1, "digits")
            for way in ways:  # compilation caches, the data loaded once in this process
                WAYS[way](warm_up, scratch / "warm_up" / way)
            walls = {way: [] for way in ways}
            trains, identical = {}, True
            for repeat in range(args.repeats):
                order = ways if repeat % 2 == 0 else ways[::-1]
                for way in order:
                    out = scratch / way
                    start = time.perf_counter()
                    WAYS[way](config, out)
                    walls[way].append(time.perf_counter() - start)
                    trains.setdefault(way, []).append(train_seconds(run_folders(out, way), way))
                reference = run_folders(scratch / "separate", "separate")
                identical &= all(identical_metrics(reference, run_folders(scratch / way, way))
                                 for way in ways[1:])
            row = {"chip": name, "chips": args.chips, "epochs": args.epochs,
                   "repeats": args.repeats, "metrics_identical": identical}
            samples = args.chips * args.epochs * TRAINING_IMAGES
            for way in ways:
                wall = statistics.median(walls[way])
                row[way] = {"wall_s": wall, "walls_s": walls[way],
                            "chip_samples_per_s": samples / wall,
                            "train_s": statistics.median(trains[way])}
            row["ratio"] = row["population"]["chip_samples_per_s"] / \
                row["separate"]["chip_samples_per_s"]
            row["meets_target"] = row["ratio"] >= TARGET
            if "commands" in row:
                row["ratio_to_commands"] = row["population"]["chip_samples_per_s"] / \
                    row["commands"]["chip_samples_per_s"]
            rows.append(row)
            print(f"{name}: " + ", ".join(f"{way} {row[way]['wall_s']:.1f} s" for way in ways)
                  + f"; population / separate {row['ratio']:.2f}x; metrics identical: "
                  f"{identical}", flush=True)
    result = {"benchmark": f"one population run of {args.chips} chips vs {args.chips} "
                           "single-chip runs, FA [784,100,10] on MNIST, batch 64, float32, "
                           "numba",
              "machine": machine(), "rows": rows,
              "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "population_runs_2core.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "population_runs_2core.md").write_text(markdown(result, ways))
    print(f"wrote {args.out / 'population_runs_2core.md'}")


def markdown(result: dict, ways: list[str]) -> str:
    m, rows = result["machine"], result["rows"]
    first = rows[0]
    lines = [f"# {result['benchmark']}", "",
             f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores, "
             f"{m['numba_threads']} Numba threads), Python {m['python']}, numpy "
             f"{m['numpy']}, numba {m['numba']}; 1-minute load average "
             f"{result['load_average_1min']['before']:.2f} before, "
             f"{result['load_average_1min']['after']:.2f} after. Whole runs of seeds "
             f"0..{first['chips'] - 1}, {first['epochs']} epoch(s) of MNIST (60,000 images "
             "each), the default evaluation points, no OOD sets, no run reports; medians of "
             f"{first['repeats']} interleaved repeats after a warm-up. Adam (lr 1e-4) for "
             "ideal and pulsed updates; plain SGD (lr 0.01, BL 31) for in-array "
             "(stochastic) ones. chip-samples/s: chips x training samples / wall time of "
             f"the whole command. Target (issue 5): the population >= {TARGET}x the "
             "chip-samples/s of the single-chip runs.", "",
             "| chip | way | wall (s) | chip-samples/s | training steps (s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        for way in ways:
            w = r[way]
            lines.append(f"| {r['chip']} | {way} | {w['wall_s']:.1f} "
                         f"| {w['chip_samples_per_s']:,.0f} | {w['train_s']:.1f} |")
    lines += ["", "| chip | population / separate | population / commands | metrics.jsonl "
              "identical |", "|---|---|---|---|"]
    for r in rows:
        commands = f"{r['ratio_to_commands']:.2f}×" if "ratio_to_commands" in r else "not run"
        verdict = "meets" if r["meets_target"] else "below"
        lines.append(f"| {r['chip']} | {r['ratio']:.2f}× ({verdict} the target) | {commands} "
                     f"| {'yes' if r['metrics_identical'] else 'NO'} |")
    lines += ["", "separate: one `neurosim run` of the seeds, the runs one after another in one "
              "process. population: the same with `population: {seeds: [...]}`, the same "
              "seeds. commands: one "
              "`neurosim run` process per seed. Training steps: the runs' `summary.json` "
              "training seconds, the separate runs' summed, a population's one chip's (its "
              "chips share every step call). The rest of the wall time is the same work "
              "either way: the measurement passes (each chip's inference, compute-bound), "
              "each chip's scores and final analyses, the noise probe sets, the data, the "
              "records and checkpoints, and for the commands the processes' start. (The "
              "runs' evaluation seconds are not comparable: a population chip's count the "
              "shared measurement calls but only its own scoring, so they are not shown.)",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
