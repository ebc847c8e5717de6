"""Datasets for neurosim experiments: loading, checking, downloading, OOD transforms.

Public API:

* :func:`load_dataset` / :class:`Dataset`: images as float32 ``(N, 784)`` rows in [0, 1]
  (28x28, MNIST frame) with int64 labels, or ``(N, 3072)`` native 3x32x32 colour rows for
  ``cifar10`` (``DatasetSpec.features``); see :mod:`neurosim.data.loaders` for each
  dataset's split and layout.
* :data:`DATASET_NAMES`, :func:`list_datasets`.
* :func:`verify`, :func:`fetch`, :func:`resolve_data_dir` (:mod:`neurosim.data.store`).
* OOD transforms in :mod:`neurosim.data.ood`.
"""

from neurosim.data.loaders import Dataset, list_datasets, load_dataset
from neurosim.data.registry import DATASET_NAMES
from neurosim.data.store import fetch, resolve_data_dir, verify

__all__ = ["DATASET_NAMES", "Dataset", "fetch", "list_datasets", "load_dataset", "resolve_data_dir", "verify"]
