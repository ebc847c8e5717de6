"""Custom training loops of the reproduction (Fig. 2's weight trajectories, Fig. 5's
meta-loss): a context's chip, backend and optimizers stepped one batch at a time, with the
paper's noise and deterministic data batches (:class:`Lab`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from neurosim import evaluation, rng
from neurosim.backends import Backend, create_backend
from neurosim.chip import Chip
from neurosim.config import (ChipConfig, NetworkConfig, OptimizerConfig, PreconditionConfig,
                             SimulationConfig)
from neurosim.data.frame import FRAME_SIDE
from neurosim.optimizers import OptimizerState
from neurosim.precondition import NoiseSource
from neurosim.rows import EpochOrder, batch_bounds
from neurosim.reproduce.context import PAPER_DIMS, Context
from neurosim.rules import get_rule

BATCH = 64          # the paper's batch size (noise and data)
NOISE_LR = 1e-4     # the paper's Adam learning rate
SGD_LR = 0.01       # plain SGD on chips that update in the array (stochastic mode)


@dataclass
class Lab:
    """The chip, backend and optimizers of a context for custom training loops."""

    chip_config: ChipConfig
    backend: Backend
    sgd: bool  # the chip updates in the array: plain SGD at SGD_LR instead of Adam

    @classmethod
    def of(cls, ctx: Context) -> "Lab":
        return cls(ctx.chip_config(), create_backend(SimulationConfig(backend=ctx.backend)),
                   ctx.in_array_sgd())

    def chip(self, seed: int) -> Chip:
        """A fresh [784, 100, 10] FA chip (its initialization is a function of ``seed``)."""
        return Chip(self.chip_config, NetworkConfig(dims=PAPER_DIMS), get_rule("fa"), seed,
                    "float32")

    def optimizer(self, chip: Chip, lr: float) -> OptimizerState:
        """A fresh optimizer: Adam at ``lr``, or plain SGD at :data:`SGD_LR` (in-array)."""
        config = (OptimizerConfig(name="sgd", lr=SGD_LR) if self.sgd
                  else OptimizerConfig(name="adam", lr=lr))
        return OptimizerState.create(config, chip.n_params, chip.dtype)

    def optimizer_text(self, lr: float) -> str:
        return f"SGD lr {SGD_LR:g} (in-array updates)" if self.sgd else f"Adam lr {lr:g}"

    def noise(self, seed: int, n_examples: int, chip: Chip) -> NoiseSource:
        """The paper's noise: a fixed set of ``n_examples`` N(0, 1) inputs with uniform
        random labels, reshuffled every epoch, batch 64 (a function of ``seed``)."""
        config = PreconditionConfig(enabled=True, regime="fixed_set", n_examples=n_examples,
                                    batch_size=BATCH)
        return NoiseSource(config, self.backend, seed, (FRAME_SIDE, FRAME_SIDE), chip.dims[-1],
                           chip.dtype)

    def step(self, chip: Chip, optimizer: OptimizerState, x: np.ndarray,
             y: np.ndarray) -> tuple[float, int]:
        grads = np.zeros(chip.n_params, dtype=chip.dtype)
        return self.backend.train_step(chip, optimizer, x, y, grads, np.zeros_like(grads))

    def evaluate(self, chip: Chip, x: np.ndarray, y: np.ndarray) -> dict:
        """Mean cross-entropy ``loss`` and ``accuracy`` of ``chip`` on ``(x, y)``."""
        return evaluation.loss_and_accuracy(chip, self.backend, x, y)


def data_batches(seed: int, stream: int, x: np.ndarray, y: np.ndarray,
                 steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``steps`` mini-batches (64) of ``(x, y)``, reshuffled every epoch by a permutation
    keyed by ``(seed, epoch, stream)`` (stream 0 is the trainer's data order)."""
    order = EpochOrder(seed, rng.Purpose.DATA_SHUFFLE, len(y), stream)
    for step in range(steps):
        epoch, lo, hi = batch_bounds(step, len(y), BATCH)
        index = order(epoch)[lo:hi]
        yield x[index], y[index]


def even_points(total: int, count: int) -> list[int]:
    """``count`` evenly spaced integers from 0 to ``total`` (both included, distinct)."""
    return sorted({int(round(v)) for v in np.linspace(0, total, max(count, 2))})
