"""Benchmark: one FA training step of a [784, 100, 10] network on the ideal chip.

Measured side by side in one run, as medians of interleaved repeats after warm-up:

* ``numba``: neurosim's default backend (gradients, optimizer and array update in one
  compiled call), through the call the trainer makes, with its default deterministic
  products (split between threads by shape, single-threaded BLAS per block);
* ``numba (deterministic: false)``: the same with each product one multithreaded BLAS call
  (``simulation.deterministic: false``: rounding depends on the thread count);
* ``numpy``: the reference backend (for scale);
* ``torch``: a plain torch CPU implementation of the same step (manual FA forward/backward,
  ``torch.optim``), the way a user would write it without neurosim;
* the machine's float32 GEMM peak (numpy 2048 x 2048 matmul), against which the step's
  achieved FLOP rate is reported.

FLOPs per sample (a multiply-add counts 2): forward ``2 sum n_l n_{l-1}``, weight gradients
the same again, feedback ``2 sum_{l>=2} n_{l-1} n_l``. Writes
``benchmarks/results/core_step.{json,md}`` with the machine description.

Run: ``make bench`` (installs the optional torch CPU wheel) or
``.venv/bin/python benchmarks/bench_core.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numba
import numpy as np

from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.bench import machine, time_calls
from neurosim.chip import Chip
from neurosim.config import HW_CONFIG_DIR, NetworkConfig, OptimizerConfig, load_chip
from neurosim.optimizers import OptimizerState
from neurosim.rules import get_rule

DIMS = (784, 100, 10)
RESULTS = Path(__file__).resolve().parent / "results"


def flops_per_sample(dims) -> int:
    pairs = list(zip(dims[:-1], dims[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    feedback = sum(2 * a * b for a, b in pairs[1:])
    return 2 * forward + feedback


class GemmPeak:
    """One float32 ``n x n x n`` numpy matmul: timed in every repeat beside the steps, so the
    step's fraction of peak compares two rates measured under the same machine load."""

    def __init__(self, n: int = 2048):
        self.n = n
        self.a = np.random.default_rng(0).random((n, n), dtype=np.float32)

    def __call__(self) -> None:
        self.a @ self.a

    @staticmethod
    def settle() -> None:
        """Let the BLAS threads of the matmul stop spinning (OpenBLAS busy-waits ~0.1 s after
        a call) so that they do not steal cores from the step timed next."""
        time.sleep(0.5)

    def gflops(self, seconds: float) -> float:
        return 2 * self.n ** 3 / seconds / 1e9


class NeurosimStep:
    """The trainer's step (:meth:`Backend.train_step`: gradients, optimizer, array update) on
    one backend."""

    def __init__(self, backend, optimizer: OptimizerConfig, batch: int):
        chip_config = load_chip(HW_CONFIG_DIR / "ideal.yaml")
        self.chip = Chip(chip_config, NetworkConfig(dims=DIMS), get_rule("fa"), 0, "float32")
        self.backend = backend
        self.state = OptimizerState.create(optimizer, self.chip.n_params, self.chip.dtype)
        self.grads = np.zeros(self.chip.n_params, dtype=np.float32)
        self.deltas = np.zeros_like(self.grads)
        generator = np.random.default_rng(1)
        self.x = generator.random((batch, DIMS[0]), dtype=np.float32)
        self.y = generator.integers(0, DIMS[-1], batch)

    def __call__(self) -> None:
        self.backend.train_step(self.chip, self.state, self.x, self.y, self.grads,
                                self.deltas)  # what a run calls


class TorchStep:
    """Plain torch FA step: the same network, rule and optimizer, no neurosim."""

    def __init__(self, optimizer: OptimizerConfig, batch: int):
        import torch

        self.torch = torch
        g = torch.Generator().manual_seed(0)
        bound = [1 / np.sqrt(n) for n in DIMS[:-1]]
        self.W = [(torch.rand(DIMS[i + 1], DIMS[i], generator=g) * 2 - 1) * bound[i]
                  for i in range(2)]
        self.b = [(torch.rand(DIMS[i + 1], generator=g) * 2 - 1) * bound[i] for i in range(2)]
        self.B = (torch.rand(DIMS[1], DIMS[2], generator=g) * 2 - 1) * bound[1]
        params = self.W + self.b
        for p in params:
            p.grad = torch.zeros_like(p)
        if optimizer.name == "adam":
            self.opt = torch.optim.Adam(params, lr=optimizer.lr)
        else:
            self.opt = torch.optim.SGD(params, lr=optimizer.lr, momentum=optimizer.momentum)
        self.x = torch.rand(batch, DIMS[0], generator=g)
        y = torch.randint(0, DIMS[-1], (batch,), generator=g)
        self.onehot = torch.nn.functional.one_hot(y, DIMS[-1]).float()

    def __call__(self) -> None:
        torch = self.torch
        (W1, W2), (b1, b2) = self.W, self.b
        a1 = torch.addmm(b1, self.x, W1.T)
        h1 = torch.relu(a1)
        a2 = torch.addmm(b2, h1, W2.T)
        e = (torch.softmax(a2, dim=1) - self.onehot) / self.x.shape[0]
        d1 = (e @ self.B.T) * (a1 > 0)
        torch.mm(e.T, h1, out=W2.grad)
        torch.mm(d1.T, self.x, out=W1.grad)
        torch.sum(e, 0, out=b2.grad)
        torch.sum(d1, 0, out=b1.grad)
        self.opt.step()


class BlasThreads:
    """A step whose BLAS runs with ``threads`` threads (the process-wide limit is set around
    each timed batch of steps, so two Numba modes can be timed side by side)."""

    def __init__(self, step, threads: int):
        self.step, self.threads = step, threads

    def __call__(self) -> None:
        self.step()


def time_steps(step, n_steps: int) -> float:
    return time_calls(step, n_steps, step.threads if isinstance(step, BlasThreads) else None)


def measure(optimizer: OptimizerConfig, batch: int, repeats: int, have_torch: bool) -> dict:
    """Median seconds per step of every implementation, interleaved repeat by repeat."""
    steps = {"numba": BlasThreads(NeurosimStep(NumbaBackend("float32"), optimizer, batch), 1),
             "numba (deterministic: false)": BlasThreads(
                 NeurosimStep(NumbaBackend("float32", deterministic=False), optimizer, batch),
                 numba.get_num_threads()),
             "numpy": NeurosimStep(NumpyBackend("float32"), optimizer, batch)}
    if have_torch:
        steps["torch"] = TorchStep(optimizer, batch)
    n_steps = 200 if batch >= 64 else 2000
    peak = GemmPeak()
    for step in steps.values():  # warm-up: compilation, caches, allocator
        time_steps(step, max(10, n_steps // 10))
    peak()
    samples = {name: [] for name in steps}
    peak_samples = []
    for _ in range(repeats):
        peak_samples.append(time_steps(peak, 1))
        peak.settle()
        for name, step in steps.items():
            samples[name].append(time_steps(step, n_steps))
    return samples, [peak.gflops(seconds) for seconds in peak_samples], n_steps


def per_repeat_median(numerators: list[float], denominators: list[float]) -> float:
    """Median over repeats of the ratio of two quantities measured in the same repeat (so a
    change of the machine's load between repeats cancels instead of skewing the ratio)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not installed (pip install 'neurosim[torch]'): torch column skipped")

    flops = flops_per_sample(DIMS)
    rows = []
    for optimizer in (OptimizerConfig(name="adam", lr=1e-4), OptimizerConfig(name="sgd", lr=0.01)):
        for batch in (64, 1):
            samples, peaks, n_steps = measure(optimizer, batch, args.repeats, have_torch)
            for name, times in samples.items():
                seconds = statistics.median(times)
                rates = [flops * batch / t / 1e9 for t in times]
                fractions = [rate / peak for rate, peak in zip(rates, peaks)]
                rows.append({"optimizer": optimizer.name, "batch": batch, "backend": name,
                             "step_us": seconds * 1e6, "samples_per_s": batch / seconds,
                             "gflops": statistics.median(rates),
                             "gemm_peak_gflops": statistics.median(peaks),
                             "fraction_of_gemm_peak": statistics.median(fractions),
                             "fraction_of_gemm_peak_range": [min(fractions), max(fractions)],
                             "speedup_vs_torch": (per_repeat_median(samples["torch"], times)
                                                  if have_torch else None),
                             "repeats": args.repeats, "steps_per_repeat": n_steps})
            numba_row = rows[-len(samples)]
            print(f"{optimizer.name:4s} batch {batch:3d}: numba {numba_row['step_us']:8.1f} us, "
                  f"{numba_row['fraction_of_gemm_peak']:.0%} of GEMM peak, "
                  f"{numba_row['speedup_vs_torch'] or float('nan'):.2f}x torch", flush=True)

    result = {"benchmark": "FA training step, [784,100,10], ideal chip, float32",
              "flops_per_sample": flops,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "machine": machine(), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core_step.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "core_step.md").write_text(markdown(result))
    print(f"wrote {args.out / 'core_step.md'}")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# {result['benchmark']}", "",
             f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores), Python "
             f"{m['python']}, numpy {m['numpy']}, numba {m['numba']}, torch {m['torch']}. "
             f"{result['flops_per_sample'] / 1e3:.1f} kFLOP per sample; peak RSS "
             f"{result['peak_rss_mib']:.0f} MiB. Medians of {result['rows'][0]['repeats']} "
             f"interleaved repeats (all implementations, and the float32 GEMM peak as one numpy "
             f"2048^3 matmul, timed in every repeat). `of GEMM peak` and `speed vs torch` are "
             f"medians of the ratios within each repeat (a load change between repeats cancels); "
             f"`range` is their lowest and highest repeat, a measure of the machine's noise.", "",
             "| optimizer | batch | backend | step (µs) | samples/s | GFLOP/s | GEMM peak "
             "(GFLOP/s) | of GEMM peak | range | speed vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ratio = f"{r['speedup_vs_torch']:.2f}×" if r["speedup_vs_torch"] else "–"
        low, high = r["fraction_of_gemm_peak_range"]
        lines.append(f"| {r['optimizer']} | {r['batch']} | {r['backend']} | {r['step_us']:.1f} "
                     f"| {r['samples_per_s']:,.0f} | {r['gflops']:.1f} "
                     f"| {r['gemm_peak_gflops']:.1f} | {r['fraction_of_gemm_peak']:.0%} "
                     f"| {low:.0%}–{high:.0%} | {ratio} |")
    lines += ["", "`speed vs torch` = torch's step time / this backend's (above 1: faster).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
