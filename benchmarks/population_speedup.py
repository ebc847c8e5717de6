"""The GPU population targets of issue 5, from two `neurosim bench` results: a GPU run
(torch-cuda rows) and a run of the Numba backend on the 2-core development machine.

    python benchmarks/population_speedup.py benchmarks/results/bench_h100.json \\
        benchmarks/results/bench_numba_2core.json --out benchmarks/results/population_gpu.md

For each chip, the reference is the Numba backend's best training chip-samples/s over the
population sizes of the CPU run (single chip or population, whichever is faster), and
every torch-cuda population row is divided by it. Targets, for 256 chips: >= 50x with
ideal devices, >= 20x with pulsed constant-step devices. The two runs are on different machines and days
(the only way to compare them); each is a median of interleaved repeats in its own run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = {"ideal": 50.0, "constant_step": 20.0}
TARGET_CHIPS = 256  # the targets are for a population of this size


def table(gpu: dict, cpu: dict) -> str:
    gm, cm = gpu["machine"], cpu["machine"]
    lines = ["# Chip populations on a GPU vs the Numba backend on the 2-core machine", "",
             f"GPU run: {gm['date']}, {gm['gpu']} (CUDA {gm.get('cuda')}), {gm['cpu']} "
             f"({gm['cores']} cores), torch {gm['torch']}, numpy {gm['numpy']}.",
             f"CPU run: {cm['date']}, {cm['cpu']} ({cm['cores']} cores), numba {cm['numba']} "
             f"({cm['numba_threads']} threads), numpy {cm['numpy']}; 1-minute load average "
             f"{cpu['load_average_1min']['before']:.2f} before.", "",
             "Training chip-samples/s of one population step (`neurosim bench`, config "
             "`paper_mnist`: [784, 100, 10], FA, Adam, batch 64, float32). Reference: the "
             "Numba backend's best over its population sizes on the CPU run. `batches`: "
             "`device`, the batches gathered on the GPU from a dataset kept there (what "
             "`neurosim run` does with its data and fixed noise sets); `host`, NumPy batches "
             "copied in every step (what a fresh noise stream costs). The two runs are on "
             "different machines and days (the target compares them); each ratio divides a "
             "median of one run by a median of the other. `fused`: the optimizer and array update "
             "(ideal update, pulse counts) as Triton kernels (`simulation.fused_update`), or "
             "as separate torch operations; bit-identical.", "",
             "| chip | chips | batches | fused | GPU chip-samples/s | Numba chip-samples/s "
             "(2 cores, best) | ratio | target |", "|---|---|---|---|---|---|---|---|"]
    for chip, target in TARGETS.items():
        numba = [r for r in cpu["rows"] if r["backend"] == "numba" and r["chip"] == chip]
        if not numba:
            continue
        best = max(numba, key=lambda r: r["train_chip_samples_per_s"])
        reference = best["train_chip_samples_per_s"]
        for r in gpu["rows"]:
            if r["backend"] != "torch-cuda" or r["chip"] != chip:
                continue
            ratio = r["train_chip_samples_per_s"] / reference
            verdict = (f">= {target:.0f}x: {'met' if ratio >= target else 'not met'}"
                       if r["population"] == TARGET_CHIPS else "")
            fused = {True: "yes", False: "no"}.get(r.get("fused_update"), "no (before it)")
            lines.append(f"| {chip} | {r['population']} | {r.get('batches', 'host')} "
                         f"| {fused} | {r['train_chip_samples_per_s']:,.0f} | {reference:,.0f} "
                         f"(x{best['population']}) | {ratio:.1f}x | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu", type=Path, help="bench.json of the GPU run")
    parser.add_argument("cpu", type=Path, help="bench.json of the 2-core Numba run")
    parser.add_argument("--out", type=Path, help="markdown file (default: print)")
    args = parser.parse_args()
    text = table(json.loads(args.gpu.read_text()), json.loads(args.cpu.read_text()))
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
