"""Benchmark: a population of 16 chips against 16 chips stepped one after another (Numba).

FA, [784, 100, 10], batch 64, float32, on the ideal chip and on ``constant_step`` devices
(128 levels) programmed by ``pulsed`` updates (Adam, lr 1e-4), and by ``stochastic``
in-array updates (BL 31, plain SGD, lr 0.01). Measured side by side in one run, as medians
of interleaved repeats after warm-up:

* ``sequential``: each chip's training step through :meth:`Backend.train_step`, the chips
  one after another: what 16 separate single-chip runs compute per step (each step's
  products, and its fused optimizer and array update, split between Numba's threads by
  shape);
* ``population``: :meth:`Backend.population_step` on all 16 chips at once, the batches
  stacked first as :func:`neurosim.train.run_population` does (one chip per Numba thread,
  each chip's kernels serial; bit-identical per chip to the sequential steps);
* ``alone``: one chip stepped again and again, as 16 separate runs made one after another
  step their chip. Its state stays in the cache from step to step, which the 16 chips'
  state (about 1 MB each in parameters and Adam moments) does not: the reference a
  population has to beat to be worth it, against the one above that shows what stepping
  many chips costs.

Each chip trains on its own batches (fixed random batches per chip, cycled), every way
being :class:`neurosim.bench.Workload`\ s timed by :func:`neurosim.bench.measure` (the
code of ``neurosim bench``). Throughput is in chip-samples/s: chips x batch x steps /
seconds. Target (issue 5): population >= 1.5x
sequential. Writes ``benchmarks/results/population.{json,md}`` with the machine description.

    .venv/bin/python benchmarks/bench_population.py [--repeats N] [--chips M] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numba

from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.bench import Workload, constant_step_chip, machine, measure
from neurosim.config import HW_CONFIG_DIR, ChipConfig, ExperimentConfig, load_chip
from neurosim.schema import build

DIMS = (784, 100, 10)
BATCH = 64
TARGET = 1.5
WAYS = ("sequential", "population", "alone")
RESULTS = Path(__file__).resolve().parent / "results"
ADAM = {"name": "adam", "lr": 1e-4}
SGD = {"name": "sgd", "lr": 0.01}  # in-array updates: plain SGD (device_step.md's rate)


def experiment(optimizer: dict) -> ExperimentConfig:
    return build(ExperimentConfig, {"name": "population", "chip": "ideal",
                                    "network": {"dims": list(DIMS)}, "rule": "fa",
                                    "optimizer": optimizer}, "bench")


def time_ways(chip_config: ChipConfig, optimizer: dict, n_chips: int, repeats: int,
              repeat_seconds: float) -> dict:
    """Median seconds per step (all its chips) of the three ways and the steps per
    repeat, interleaved repeat by repeat."""
    backend = NumbaBackend("float32")
    steps = {way: Workload(experiment(optimizer), chip_config, backend,
                           1 if way == "alone" else n_chips, BATCH,
                           together=way == "population", blas_threads=1)
             for way in WAYS}
    return measure({way: (w.train, w.blas_threads, "numba", w.wait) for way, w in steps.items()},
                   repeats, repeat_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--chips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="about this long per timed repeat")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chips = {"ideal": (load_chip(HW_CONFIG_DIR / "ideal.yaml"), ADAM),
             "constant_step, pulsed": (constant_step_chip(0.0), ADAM),
             "constant_step, stochastic": (constant_step_chip(0.0, "stochastic"), SGD)}
    rows = []
    load_before = os.getloadavg()
    for name, (chip_config, optimizer) in chips.items():
        timings = time_ways(chip_config, optimizer, args.chips, args.repeats, args.seconds)
        seconds = {way: t["seconds"] for way, t in timings.items()}
        rates = {way: (1 if way == "alone" else args.chips) * BATCH / s
                 for way, s in seconds.items()}
        ratio = rates["population"] / rates["sequential"]
        rows.append({"chip": name, "chips": args.chips, "batch": BATCH,
                     "sequential_step_ms": seconds["sequential"] * 1e3,
                     "population_step_ms": seconds["population"] * 1e3,
                     "sequential_chip_samples_per_s": rates["sequential"],
                     "population_chip_samples_per_s": rates["population"],
                     "alone_step_ms": seconds["alone"] * 1e3,
                     "alone_chip_samples_per_s": rates["alone"],
                     "ratio_to_alone": rates["population"] / rates["alone"],
                     "ratio": ratio, "target": TARGET, "meets_target": ratio >= TARGET,
                     "repeats": args.repeats, "seconds_per_repeat": args.seconds,
                     **{f"{way}_steps_per_repeat": t["calls_per_repeat"]
                        for way, t in timings.items()}})
        print(f"{name}: population {rates['population']:,.0f} chip-samples/s, sequential "
              f"{rates['sequential']:,.0f}: {ratio:.2f}x; one chip alone "
              f"{rates['alone']:,.0f}", flush=True)
    result = {"benchmark": f"population of {args.chips} chips vs {args.chips} sequential "
                           f"single-chip steps, FA [784,100,10], batch {BATCH}, float32, "
                           "numba",
              "numba_threads": numba.get_num_threads(), "machine": machine(), "rows": rows,
              "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "population.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "population.md").write_text(markdown(result))
    print(f"wrote {args.out / 'population.md'}")


def markdown(result: dict) -> str:
    m, rows = result["machine"], result["rows"]
    lines = [f"# {result['benchmark']}", "",
             f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores, "
             f"{result['numba_threads']} Numba threads), Python {m['python']}, numpy "
             f"{m['numpy']}, numba {m['numba']}; 1-minute load average "
             f"{result['load_average_1min']['before']:.2f} before, "
             f"{result['load_average_1min']['after']:.2f} after (the benchmark's own threads "
             "included; other work on the machine slows the sequential steps' many short "
             "parallel regions most). Medians of "
             f"{rows[0]['repeats']} interleaved repeats of about "
             f"{rows[0]['seconds_per_repeat']} s each. Target (issue 5): the "
             f"population >= {TARGET}x the chip-samples/s of the chips stepped one after "
             "another. Adam (lr 1e-4) for ideal and pulsed updates; plain SGD (lr 0.01, "
             "BL 31) for in-array (stochastic) ones.", "",
             "| chip | chips | sequential step, all chips (ms) | population step (ms) "
             "| sequential chip-samples/s | population chip-samples/s | population / "
             "sequential | one chip alone chip-samples/s | population / alone |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['chip']} | {r['chips']} | {r['sequential_step_ms']:.2f} "
                     f"| {r['population_step_ms']:.2f} "
                     f"| {r['sequential_chip_samples_per_s']:,.0f} "
                     f"| {r['population_chip_samples_per_s']:,.0f} | {r['ratio']:.2f}× "
                     f"({'meets' if r['meets_target'] else 'below'} the target) "
                     f"| {r['alone_chip_samples_per_s']:,.0f} | {r['ratio_to_alone']:.2f}× |")
    lines += ["", "Sequential: `Backend.train_step` chip after chip (each step's products "
              "and fused optimizer and array update split between Numba's threads by shape). "
              "Population: `Backend.population_step`, one chip per Numba thread, each chip's "
              "kernels serial, batches stacked first; per chip bit-identical to the "
              "sequential steps. One chip alone: `Backend.train_step` on one chip again "
              "and again, its state in the cache, as separate runs made one after another "
              "step their chip (the sequential steps fetch each chip's state from memory).",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
