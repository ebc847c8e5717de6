"""Benchmark: the training step under each update mode, [784, 100, 10], batch 64.

For ``constant_step`` devices (128 levels, with and without cycle-to-cycle noise) and for
every pulsed chip preset, the step time of the ``pulsed`` update is measured side by side
with the ``ideal`` update on the same network (Numba backend, Adam, float32), as medians of
interleaved repeats after warm-up; the pulses per step are reported with it. Target (issue
3): pulsed <= 3x the ideal step. The in-array ``stochastic`` mode (BL 31, SGD) is reported
in samples/s (target >= 10,000). Writes ``benchmarks/results/device_step.{json,md}``.

    .venv/bin/python benchmarks/bench_devices.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.bench import constant_step_chip, machine, time_calls
from neurosim.chip import Chip
from neurosim.config import HW_CONFIG_DIR, ChipConfig, NetworkConfig, OptimizerConfig, load_chip
from neurosim.optimizers import OptimizerState
from neurosim.rules import get_rule

DIMS = (784, 100, 10)
BATCH = 64
RESULTS = Path(__file__).resolve().parent / "results"


class Step:
    """The trainer's step on one chip, cycling through 32 fixed random batches."""

    def __init__(self, chip_config: ChipConfig, lr: float, optimizer: str = "adam"):
        self.chip = Chip(chip_config, NetworkConfig(dims=DIMS), get_rule("fa"), 0, "float32")
        self.backend = NumbaBackend("float32")
        self.state = OptimizerState.create(OptimizerConfig(name=optimizer, lr=lr),
                                           self.chip.n_params, self.chip.dtype)
        self.grads = np.zeros(self.chip.n_params, dtype=np.float32)
        self.deltas = np.zeros_like(self.grads)
        generator = np.random.default_rng(1)
        self.x = generator.random((32, BATCH, DIMS[0]), dtype=np.float32)
        self.y = generator.integers(0, DIMS[-1], (32, BATCH))
        self.count = 0

    def __call__(self) -> None:
        i = self.count % 32
        self.count += 1
        feedback = self.backend.feedback_buffer(self.chip)
        if self.chip.update_mode == "stochastic":
            _, _, inputs, errors = self.backend.local_signals(self.chip, feedback, self.x[i],
                                                              self.y[i], self.chip.rule.code,
                                                              training=True)
            self.backend.apply_stochastic_update(self.chip, self.state, inputs, errors)
            return
        self.backend.gradients(self.chip, feedback, self.x[i], self.y[i], self.chip.rule.code,
                               self.grads, training=True)
        self.backend.update(self.chip, self.state, self.grads, self.deltas)


def stochastic_rows(repeats: int) -> list[dict]:
    """Samples/s of in-array stochastic updates (BL 31, plain SGD) beside the ideal step."""
    rows = []
    for lr in (0.01, 0.1):
        for ctoc in (0.0, 0.3):
            steps = {"ideal": Step(load_chip(HW_CONFIG_DIR / "ideal.yaml"), lr, "sgd"),
                     "stochastic": Step(constant_step_chip(ctoc, "stochastic"), lr, "sgd")}
            for step in steps.values():
                time_calls(step, 10)
            samples = {name: [] for name in steps}
            for _ in range(repeats):
                for name, step in steps.items():
                    samples[name].append(time_calls(step, 20))
            ideal_s, stochastic_s = (statistics.median(samples[n]) for n in steps)
            chip = steps["stochastic"].chip
            rows.append({"chip": f"constant_step (c2c {ctoc:g})", "sgd_lr": lr,
                         "ideal_samples_per_s": BATCH / ideal_s,
                         "stochastic_samples_per_s": BATCH / stochastic_s,
                         "pulses_per_sample": chip.pulses.sum() / (chip.update_count * BATCH)})
            print(f"stochastic lr {lr:g} c2c {ctoc:g}: {BATCH / stochastic_s:8.0f} samples/s "
                  f"({rows[-1]['pulses_per_sample']:.0f} pulses/sample)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chips = [constant_step_chip(0.0), constant_step_chip(0.3)]
    chips += [load_chip(p) for p in sorted(HW_CONFIG_DIR.glob("*.yaml"))
              if load_chip(p).forward.update.mode == "pulsed"]
    rows = []
    for lr in (1e-4, 1e-3):
        for chip in chips:
            steps = {"ideal": Step(load_chip(HW_CONFIG_DIR / "ideal.yaml"), lr),
                     "pulsed": Step(chip, lr)}
            for step in steps.values():
                time_calls(step, 30)
            samples = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():
                    samples[name].append(time_calls(step, 100))
            ideal_s, pulsed_s = (statistics.median(samples[n]) for n in ("ideal", "pulsed"))
            pulses = steps["pulsed"].chip.pulses.sum() / steps["pulsed"].chip.update_count
            rows.append({"chip": chip.name, "lr": lr, "ideal_step_us": ideal_s * 1e6,
                         "pulsed_step_us": pulsed_s * 1e6, "ratio": pulsed_s / ideal_s,
                         "pulses_per_step": pulses,
                         "pulsed_samples_per_s": BATCH / pulsed_s})
            print(f"lr {lr:g} {chip.name:26s} ideal {ideal_s * 1e6:7.0f} us  pulsed "
                  f"{pulsed_s * 1e6:7.0f} us  ratio {pulsed_s / ideal_s:4.2f}  "
                  f"{pulses:8.0f} pulses/step", flush=True)
    stochastic = stochastic_rows(args.repeats)
    result = {"benchmark": "FA step per update mode, [784,100,10], batch 64, float32, numba",
              "machine": machine(), "repeats": args.repeats, "rows": rows,
              "stochastic": stochastic,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device_step.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# {result['benchmark']}", "",
             f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores); medians of "
             f"{args.repeats} interleaved repeats of 100 steps. Target: pulsed <= 3x ideal.", "",
             "| chip | Adam lr | ideal step (µs) | pulsed step (µs) | pulsed / ideal | pulses per step | pulsed samples/s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['chip']} | {r['lr']:g} | {r['ideal_step_us']:.0f} | {r['pulsed_step_us']:.0f} "
              f"| {r['ratio']:.2f} | {r['pulses_per_step']:.0f} | {r['pulsed_samples_per_s']:,.0f} |"
              for r in rows]
    lines += ["", "## Stochastic (in-array) updates, BL 31, plain SGD", "",
              "Per-sample Bernoulli pulse trains on rows and columns, one pulse per coincidence "
              "(target: >= 10,000 samples/s). Pulses per sample grow with the learning rate.", "",
              "| chip | SGD lr | ideal samples/s | stochastic samples/s | pulses per sample |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['chip']} | {r['sgd_lr']:g} | {r['ideal_samples_per_s']:,.0f} "
              f"| {r['stochastic_samples_per_s']:,.0f} | {r['pulses_per_sample']:.0f} |"
              for r in stochastic]
    lines.append("")
    (args.out / "device_step.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'device_step.md'}")


if __name__ == "__main__":
    main()
