"""Whether a population of chips can fit in the memory it would run in, checked before it
starts.

A population (:mod:`neurosim.population`) holds every chip's state at once. Past what the
machine has, an allocation fails minutes into the run, or, with Linux's memory
overcommit, the kernel kills the process without a message. :func:`check_population_fits`
refuses such a population before anything is allocated, with the number of chips that
could run at once (``population.max_chips``).

The check compares a **lower bound** with the memory available now, so it never refuses
a population that would fit: what each chip is sure to hold for its whole run, at the
simulation's float size, plus (when its noise phase draws a fixed set) its noise set's
inputs,

    bytes ≥ Σ_chips [s · ((1 + k) P + F) + D · C] + s · N · n_0 · (distinct fixed noise sets)

with ``s`` bytes per float, ``P`` the parameters (weights and biases), ``k`` the optimizer's
moment buffers of ``P`` floats each (Adam 2, SGD with momentum 1, plain SGD 0), ``F`` the
feedback array's cells (:meth:`neurosim.rules.Rule.feedback_shapes`), ``C`` the forward
cells and ``D`` the bytes of each one's device (:data:`neurosim.devices.DEVICE_BYTES`, plus
:data:`~neurosim.devices.REFERENCE_BYTES` with a reference; a differential pair's two
devices with their float64 states, ``2 (DEVICE_BYTES +``
:data:`~neurosim.pair.PAIR_STATE_BYTES` ``)``; 0 for ideal devices), ``N``
noise examples of ``n_0`` inputs; runs with the same seed share their noise set. A run holds more than this (gradients, activations, a population's stacked
copies, the data), so a population near the bound may still not fit. Measured on the
quickstart network with a 10,000-example noise set (peak RSS of 2 against 10 chips on
numba), each chip more held about 37.6 MB, 1.16 times its 32.3 MB of bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psutil

from neurosim.config import RunSpec, SimulationConfig
from neurosim.devices import DEVICE_BYTES, REFERENCE_BYTES
from neurosim.pair import PAIR_STATE_BYTES
from neurosim.energy import bytes_text
from neurosim.errors import NeurosimError
from neurosim.rules import get_rule

class InsufficientMemoryError(NeurosimError):
    """A population needs more memory than the machine (or the GPU) has available."""


def _float_bytes(spec: RunSpec) -> int:
    """``s``, the bytes of one float of the run's simulation."""
    return np.dtype(spec.experiment.simulation.dtype).itemsize


def chip_floor_bytes(spec: RunSpec) -> int:
    """Bytes that one chip of the run ``spec`` holds throughout its run (the sum's term
    of the module docstring): parameters, optimizer moments, feedback array, devices."""
    experiment = spec.experiment
    dims = experiment.network.dims
    cells = sum(rows * cols for rows, cols in zip(dims[:-1], dims[1:]))
    params = cells + sum(dims[1:])
    feedback = sum(rows * cols for rows, cols in
                   filter(None, get_rule(experiment.rule).feedback_shapes(tuple(dims))))
    optimizer = experiment.optimizer
    moments = 2 if optimizer.name == "adam" else int(optimizer.momentum > 0.0)
    forward = spec.chip.forward
    device_bytes = DEVICE_BYTES + (REFERENCE_BYTES if forward.reference != "none" else 0)
    if forward.pair.mode != "none":
        device_bytes = 2 * (DEVICE_BYTES + PAIR_STATE_BYTES)
    devices = device_bytes * cells if forward.device.model != "ideal" else 0
    return _float_bytes(spec) * ((1 + moments) * params + feedback) + devices


def noise_set_key(spec: RunSpec) -> tuple | None:
    """What a run's fixed noise set is drawn from (runs with equal keys share it), or None
    when its noise phase draws none (off, or a fresh stream)."""
    pre = spec.experiment.precondition
    if not pre.enabled or pre.regime != "fixed_set":
        return None
    return spec.seed, pre.n_examples, pre.input, spec.experiment.simulation.dtype


def population_floor_bytes(specs: Sequence[RunSpec]) -> int:
    """The lower bound of the module docstring for the runs ``specs`` as one population."""
    total = sum(chip_floor_bytes(spec) for spec in specs)
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
        f"{what} needs at least {bytes_text(need)} (chip state and fixed noise sets "
        f"alone), more than the {bytes_text(available)} this {where} has available: "
        f"{advice}precondition.n_examples or network.dims")
