"""Out-of-distribution accuracy of a trained chip (DESIGN §5, the paper's Fig. 4).

The in-distribution test set is translated, rotated and scaled (``neurosim.data.ood``);
other digit datasets in the same 28x28 frame (USPS, scikit-learn digits, MNIST) are
evaluated on their test splits. A dataset that is not available is recorded as skipped with
the reason, never silently dropped.
"""

from __future__ import annotations

import numpy as np

from neurosim import evaluation
from neurosim.backends.base import Backend
from neurosim.chip import Chip
from neurosim.config import EvaluationConfig
from neurosim.data import Dataset, load_dataset, ood
from neurosim.errors import DataError


def ood_test_sets(dataset: Dataset, config: EvaluationConfig, data_dir: str | None):
    """Yield (name, inputs, labels) or (name, None, reason) for every configured OOD set."""
    x, y = dataset.x_test, dataset.y_test
    for kind in config.ood:
        if kind == "translate":
            for px in config.ood_shifts_px:
                yield f"translate_{px:g}px", ood.translate(x, px, px), y
        elif kind == "rotate":
            for deg in config.ood_rotations_deg:
                yield f"rotate_{deg:g}deg", ood.rotate(x, deg), y
        elif kind == "scale":
            for factor in config.ood_scales:
                yield f"scale_{factor:g}x", ood.scale(x, factor), y
        elif kind != dataset.name:
            try:
                other = load_dataset(kind, data_dir)
            except DataError as error:
                yield kind, None, f"skipped: {error}"
                continue
            yield kind, other.x_test, other.y_test


def ood_accuracies(chip: Chip, backend: Backend, dataset: Dataset, config: EvaluationConfig,
                   data_dir: str | None) -> dict:
    """``{name: accuracy}`` (fraction) per OOD set, with ``in_distribution`` for reference;
    unavailable sets map to a ``"skipped: ..."`` string."""
    result = {"in_distribution": evaluation.loss_and_accuracy(
        chip, backend, dataset.x_test, dataset.y_test)["accuracy"]}
    for name, x, y in ood_test_sets(dataset, config, data_dir):
        result[name] = y if x is None else evaluation.loss_and_accuracy(
            chip, backend, np.asarray(x), y)["accuracy"]
    return result
