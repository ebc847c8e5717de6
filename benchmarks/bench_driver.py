"""The host's time per step of a population run outside the backend calls: the driver of
:func:`neurosim.train.run_population` and the runs' own work between steps.

On a GPU a population step of 256 chips takes a couple of milliseconds, so what the host
does per step and chip besides launching the step decides whether a run keeps the GPU
busy. This measures it on the CPU with the torch backend: ``--chips`` runs of a tiny
network ([784, 3, 10], batch 4, so the backend calls are short), a fixed noise set and one
epoch of digits, made twice with ``--steps`` and ``--steps + 1000`` noise steps (the same
evaluations); the host time outside the backend calls per extra step is

    ((wall - calls) at steps + 1000  -  (wall - calls) at steps) / 1000

where ``calls`` is the time inside :meth:`Backend.launch_population_step` (or
``population_step`` in versions before it), the batches' gathering excluded. Medians of
``--repeats`` interleaved pairs.

    python benchmarks/bench_driver.py --chips 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import neurosim.train
from neurosim.config import ExperimentConfig, expand_runs
from neurosim.schema import build
from neurosim.train import run_population


def experiment(chips: int, steps: int) -> ExperimentConfig:
    return build(ExperimentConfig, {
        "name": "driver", "chip": "ideal", "rule": "fa",
        "network": {"dims": [784, 3, 10], "activation": "relu"},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "precondition": {"enabled": True, "regime": "fixed_set", "n_examples": 256,
                         "steps": steps, "batch_size": 4, "log_every": steps,
                         "input": {"distribution": "gaussian", "mean": 0.0, "std": 1.0}},
        "data": {"dataset": "digits", "train_size": 400, "test_size": 64},
        "train": {"epochs": 1, "batch_size": 4},
        "evaluation": {"ood": [], "train_probe_size": 64, "gradient_probe_size": 16,
                       "noise_probe_size": 64, "fractional_epochs": []},
        "seeds": list(range(chips)), "simulation": {"backend": "torch"}}, "driver")


def outside_seconds(chips: int, steps: int) -> float:
    """Wall seconds of the population run minus the seconds inside the backend calls."""
    inside = [0.0]
    create = neurosim.train.create_backend

    def timed_backend(simulation):
        backend = create(simulation)
        name = ("launch_population_step" if hasattr(backend, "launch_population_step")
                else "population_step")
        step = getattr(backend, name)

        def timed(*args):
            start = time.perf_counter()
            result = step(*args)
            inside[0] += time.perf_counter() - start
            return result

        setattr(backend, name, timed)
        return backend

    neurosim.train.create_backend = timed_backend
    try:
        runs = expand_runs(experiment(chips, steps), None)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_population(runs, [Path(folder) / str(k) for k in range(chips)])
            wall = time.perf_counter() - start
    finally:
        neurosim.train.create_backend = create
    return wall - inside[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chips", type=int, default=256)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_step = []
    for _ in range(args.repeats):
        short = outside_seconds(args.chips, args.steps)
        long = outside_seconds(args.chips, args.steps + 1000)
        per_step.append((long - short) / 1000)
        print(f"outside the calls: {short:.2f} s ({args.steps} noise steps), {long:.2f} s "
              f"({args.steps + 1000}): {per_step[-1] * 1e3:.2f} ms per step", flush=True)
    median = statistics.median(per_step)
    print(f"{args.chips} chips: {median * 1e3:.2f} ms per step outside the backend calls, "
          f"{median / args.chips * 1e6:.1f} us per chip-step (median of {args.repeats})")


if __name__ == "__main__":
    main()
