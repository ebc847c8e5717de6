"""Digital-periphery optimizers: turn the rule's gradient ``g`` into a desired update ``dW``.

Both run in the chip's digital periphery on the flat parameter layout of
:class:`neurosim.chip.Chip` (``[W_1, b_1, W_2, b_2, ...]`` in network units); their state is
digital memory (and, for the ledger, memory traffic).

* SGD with momentum ``mu``: ``v <- mu v + g``; ``dW = -eta v`` (``mu = 0``: plain SGD,
  hardware-native).
* Adam (Kingma & Ba 2015, the paper's optimizer) in PyTorch's arithmetic:
  ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
  ``dW = (-step_size m) / (sqrt(v) inverse_sqrt_c2 + eps)`` with
  ``step_size = eta / (1 - b1^t)`` and ``inverse_sqrt_c2 = 1 / sqrt(1 - b2^t)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurosim.config import OptimizerConfig

OPTIMIZER_CODES = {"sgd": 0, "adam": 1}


@dataclass
class OptimizerState:
    """Hyper-parameters plus the mutable moment buffers and step count."""

    config: OptimizerConfig
    step: int
    m: np.ndarray  # momentum (SGD) or first moment (Adam)
    v: np.ndarray  # second moment (Adam); empty for SGD
    # The Population whose stacked moments these are (it may hold them on a GPU between
    # steps: state() first brings them back, load_state releases them before writing).
    population: object = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, config: OptimizerConfig, n_params: int, dtype: np.dtype) -> OptimizerState:
        uses_second_moment = config.name == "adam"
        uses_first_moment = uses_second_moment or config.momentum > 0.0
        return cls(config, 0,
                   np.zeros(n_params if uses_first_moment else 0, dtype=dtype),
                   np.zeros(n_params if uses_second_moment else 0, dtype=dtype))

    @property
    def code(self) -> int:
        return OPTIMIZER_CODES[self.config.name]

    def adam_scalars(self) -> tuple[float, float]:
        """``(eta / (1 - b1^t), 1 / sqrt(1 - b2^t))`` for the step about to be taken
        (``t = step + 1``), computed in float64."""
        t = self.step + 1
        return (self.config.lr / (1.0 - self.config.beta1 ** t),
                1.0 / (1.0 - self.config.beta2 ** t) ** 0.5)

    def state(self) -> dict[str, np.ndarray]:
        if self.population is not None:
            self.population.pull()
        return {"step": np.array(self.step), "m": self.m.copy(), "v": self.v.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if self.population is not None:
            self.population.release()
        self.step = int(state["step"])
        self.m[:] = state["m"]
        self.v[:] = state["v"]
