"""Where the time of a torch population step goes: the operators of a few steps under
torch's profiler, largest total time first.

    python benchmarks/profile_population.py --device cuda --chips 256 --chip constant_step

A chip is ``ideal`` or ``constant_step`` (:func:`neurosim.bench.constant_step_chip`); the
experiment is ``experiments/paper_mnist.yaml`` ([784, 100, 10], Adam, batch 64), its batches
already on the device. Prints the table and the median step time of the profiled steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from neurosim.backends import create_backend
from neurosim.bench import Workload, constant_step_chip
from neurosim.config import HW_CONFIG_DIR, load_chip, load_experiment

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "paper_mnist.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--chips", type=int, default=256)
    parser.add_argument("--chip", choices=("ideal", "constant_step"), default="ideal")
    parser.add_argument("--fused-update", choices=("auto", "on", "off"), default="auto",
                        help="simulation.fused_update: the Triton kernels (auto: on a GPU)")
    parser.add_argument("--steps", type=int, default=10, help="steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    experiment = load_experiment(EXPERIMENT)
    chip = (constant_step_chip() if args.chip == "constant_step"
            else load_chip(HW_CONFIG_DIR / "ideal.yaml"))
    backend = create_backend(dataclasses.replace(experiment.simulation, backend="torch",
                                                 device=args.device,
                                                 fused_update=args.fused_update))
    work = Workload(experiment, chip, backend, args.chips, experiment.train.batch_size,
                    data_on_device=True)
    for _ in range(3):  # warm-up: upload, allocator, cuBLAS handles
        work.train()
    work.wait()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if args.device == "cuda" else [])
    seconds = []
    with profile(activities=activities) as prof:
        for _ in range(args.repeats):  # steps launched, their losses waited for once
            start = time.perf_counter()
            for _ in range(args.steps):
                work.train()
            work.wait()
            seconds.append((time.perf_counter() - start) / args.steps)
    sort = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    step = statistics.median(seconds)
    fused = "fused kernels" if backend.fused_update else "separate operations"
    print(f"{args.chips} chips, {args.chip}, {args.device}, {fused}: median step {step * 1e3:.2f} ms "
          f"under the profiler (steps launched, losses waited for once per repeat), "
          f"{args.chips * work.batch / step:,.0f} chip-samples/s")


if __name__ == "__main__":
    main()
