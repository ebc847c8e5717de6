"""Benchmark: what the energy ledger costs the training step (target: < 10 % of throughput).

The trainer's step (``Trainer.step``: rule gradient, optimizer, array update) of a
[784, 100, 10] FA network, float32, Numba backend, measured side by side in one run with
the ledger on (as shipped: each step is tallied, and every ``flush_every`` steps, as at an
evaluation point, the tallies and the new pulses are added to the ledger) and with the
ledger's bookkeeping replaced by no-ops. Medians of interleaved repeats, for the ideal chip
and for pulsed constant-step devices, at batch 64 and batch 1. Writes
``benchmarks/results/ledger_overhead.{json,md}``.

Run: ``.venv/bin/python benchmarks/bench_ledger.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from neurosim.bench import constant_step_chip, machine, time_calls
from neurosim.config import ExperimentConfig, HW_CONFIG_DIR, expand_runs, load_chip
from neurosim.schema import build
from neurosim.train import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
DIMS = [784, 100, 10]


class NoLedger:
    """The accounting interface with nothing behind it."""

    def step(self, batch: int) -> None:
        pass

    def flush(self) -> None:
        pass


class TrainerStep:
    """``Trainer.step`` on fixed random batches; flushes every ``flush_every`` steps."""

    def __init__(self, chip, batch: int, ledger: bool, run_dir: Path, flush_every: int = 100):
        experiment = build(ExperimentConfig, {
            "name": "bench", "network": {"dims": DIMS}, "rule": "fa",
            "optimizer": {"name": "adam", "lr": 1e-4}, "precondition": {"enabled": False},
            "train": {"batch_size": batch}}, "bench")
        spec = dataclasses.replace(expand_runs(experiment)[0], chip=chip)
        self.trainer = Trainer(spec, run_dir)
        self.trainer.accounting.begin("train", experiment.optimizer)
        if not ledger:
            self.trainer.accounting = NoLedger()
        generator = np.random.default_rng(1)
        self.x = generator.random((batch, DIMS[0]), dtype=np.float32)
        self.y = generator.integers(0, DIMS[-1], batch)
        self.flush_every = flush_every
        self.count = 0

    def __call__(self) -> None:
        self.trainer.step(self.x, self.y)
        self.count += 1
        if self.count % self.flush_every == 0:
            self.trainer.accounting.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chips = {"ideal": load_chip(HW_CONFIG_DIR / "ideal.yaml"),
             "constant_step (pulsed)": constant_step_chip(0.0)}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for chip_name, chip in chips.items():
            for batch in (64, 1):
                n_steps = 200 if batch > 1 else 2000
                steps = {mode: TrainerStep(chip, batch, mode == "on", Path(scratch) / mode)
                         for mode in ("on", "off")}
                for step in steps.values():
                    time_calls(step, n_steps // 10)
                samples = {mode: [] for mode in steps}
                for _ in range(args.repeats):
                    for mode, step in steps.items():
                        samples[mode].append(time_calls(step, n_steps))
                on, off = (statistics.median(samples[m]) for m in ("on", "off"))
                rows.append({"chip": chip_name, "batch": batch, "step_us_ledger": on * 1e6,
                             "step_us_no_ledger": off * 1e6,
                             "throughput_cost": 1 - off / on})
                print(f"{chip_name:24s} batch {batch:3d}: {on * 1e6:7.1f} us with ledger, "
                      f"{off * 1e6:7.1f} us without: {1 - off / on:+.1%}", flush=True)
    result = {"benchmark": "ledger overhead on Trainer.step, FA [784,100,10], float32, numba",
              "machine": machine(), "repeats": args.repeats, "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ledger_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# {result['benchmark']}", "",
             f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores); medians of "
             f"{args.repeats} interleaved repeats, ledger flushed every 100 steps. Target: the "
             "ledger costs < 10 % of the step throughput. `cost` = 1 - (step without ledger / "
             "step with ledger); the machine is shared, so differences of a few percent in "
             "either direction are noise.", "",
             "| chip | batch | step with ledger (µs) | without (µs) | cost |", "|---|---|---|---|---|"]
    lines += [f"| {r['chip']} | {r['batch']} | {r['step_us_ledger']:.1f} | "
              f"{r['step_us_no_ledger']:.1f} | {r['throughput_cost']:+.1%} |" for r in rows]
    (args.out / "ledger_overhead.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'ledger_overhead.md'}")


if __name__ == "__main__":
    main()
