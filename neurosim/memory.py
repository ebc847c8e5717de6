"""Whether a population of chips can fit in the memory it would run in, checked before it
starts.

A population (:mod:`neurosim.population`) holds every chip's state at once. Past what the
machine has, an allocation fails minutes into the run, or, with Linux's memory
overcommit, the kernel kills the process without a message. :func:`check_population_fits`
refuses such a population before anything is allocated, with the number of chips that
could run at once (``population.max_chips``).

The check compares a **lower bound** with the memory available now, so it never refuses
a population that would fit: per chip, its forward weights and (when its noise phase
draws a fixed set) its noise set's inputs, at the simulation's float size,

    bytes ≥ M · s · (Σ_l n_{l-1} n_l) + s · N · n_0 · (distinct fixed noise sets)

(``M`` chips, ``s`` bytes per float, layer widths ``n_l``, ``N`` noise examples; runs
with the same seed share their noise set). A run holds more than this (device states,
feedback arrays, optimizer state, activations: about twice the bound for the quickstart
with a 10,000-example noise set), so a population near the bound may still not fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psutil

from neurosim.config import RunSpec, SimulationConfig
from neurosim.energy import bytes_text
from neurosim.errors import NeurosimError

class InsufficientMemoryError(NeurosimError):
    """A population needs more memory than the machine (or the GPU) has available."""


def _float_bytes(spec: RunSpec) -> int:
    """``s``, the bytes of one float of the run's simulation."""
    return np.dtype(spec.experiment.simulation.dtype).itemsize


def weights_floor_bytes(spec: RunSpec) -> int:
    """Bytes of one chip's forward weights, ``s · Σ_l n_{l-1} n_l``."""
    dims = spec.experiment.network.dims
    return _float_bytes(spec) * sum(rows * cols for rows, cols in zip(dims[:-1], dims[1:]))


def noise_set_key(spec: RunSpec) -> tuple | None:
    """What a run's fixed noise set is drawn from (runs with equal keys share it), or None
    when its noise phase draws none (off, or a fresh stream)."""
    pre = spec.experiment.precondition
    if not pre.enabled or pre.regime != "fixed_set":
        return None
    return spec.seed, pre.n_examples, pre.input, spec.experiment.simulation.dtype


def population_floor_bytes(specs: Sequence[RunSpec]) -> int:
    """The lower bound of the module docstring for the runs ``specs`` as one population."""
    total = sum(weights_floor_bytes(spec) for spec in specs)
    sets = {noise_set_key(spec): spec for spec in specs}
    sets.pop(None, None)
    return total + sum(_float_bytes(spec) * spec.experiment.precondition.n_examples
                       * spec.experiment.network.dims[0] for spec in sets.values())


def available_bytes(simulation: SimulationConfig) -> int:
    """Memory free for a new allocation where ``simulation`` runs: the GPU's free memory
    (``simulation.device: cuda``), else the host's available memory (psutil's
    ``available``: free plus what the kernel can reclaim at once)."""
    if simulation.device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    return int(psutil.virtual_memory().available)


def check_population_fits(specs: Sequence[RunSpec], available: int | None = None) -> None:
    """Refuse the runs ``specs`` as one population when its lower bound exceeds the
    memory ``available`` (default: :func:`available_bytes` where they would run)."""
    if available is None:
        available = available_bytes(specs[0].experiment.simulation)
    need = population_floor_bytes(specs)
    if need <= available:
        return
    where = "GPU" if specs[0].experiment.simulation.device == "cuda" else "machine"
    what = f"a population of {len(specs)} chips" if len(specs) > 1 else "a run"
    fits = int(available // (need / len(specs)))
    advice = (f"set population.max_chips to at most {fits} (a sweep: population.max_chips "
              "or --population-chips), or reduce " if len(specs) > 1 and fits >= 1
              else "reduce ")
    raise InsufficientMemoryError(
        f"{what} needs at least {bytes_text(need)} (forward weights and fixed noise sets "
        f"alone), more than the {bytes_text(available)} this {where} has available: "
        f"{advice}precondition.n_examples or network.dims")
