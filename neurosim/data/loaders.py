"""Turn dataset files into :class:`Dataset` arrays: images as float32 rows in [0, 1].

Grey datasets are delivered as 28x28 images (784 features, the MNIST frame); CIFAR-10 as
its native 3x32x32 colour images (3072 features, not framed).

Splits:

* ``mnist``, ``fashion_mnist``: the official 60000 / 10000 split.
* ``kmnist``: the official split when the training images are present (or downloadable).
  Otherwise training and test sets are the first 8000 and last 2000 images of the official
  10000-image test split (class counts 785..809 and 191..215), and ``Dataset.notes`` says so.
* ``usps``: the official ESL 7291 / 2007 split, put in the MNIST frame (:mod:`neurosim.data.frame`).
* ``digits``: scikit-learn's 1797 bundled 8x8 images, in their stored order: the first 1437
  train, the last 360 test; put in the MNIST frame.
* ``cifar10``: the official 50000 / 10000 split: ``data_batch_1`` .. ``data_batch_5``
  concatenated in that order, then ``test_batch``, read from the archive without extracting
  it. Each row keeps the published channel-major layout: features ``0..1023`` are the red
  plane, ``1024..2047`` green, ``2048..3071`` blue, each 32x32 row-major (feature
  ``c * 1024 + row * 32 + col``; ``x.reshape(-1, 3, 32, 32)`` gives the images), values
  divided by 255.

``train_size`` / ``test_size`` keep a prefix of each split (deterministic, not stratified).
Full datasets are cached per process, keyed by name and data directory; the arrays are
read-only, so callers share them safely.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurosim.data import formats, frame, store
from neurosim.data.registry import DATASET_NAMES, DatasetSpec, get_spec
from neurosim.errors import ConfigError, DataError

#: Datasets whose test split stands in for both splits when the training images are missing:
#: name -> number of leading test images used for training.
_TEST_SPLIT_FALLBACK = {"kmnist": 8000}
_DIGITS_N_TRAIN = 1437


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images as read-only float32 rows ``(N, n_features)`` in [0, 1], int64 labels.

    ``image_shape`` is the shape the rows reshape to: ``(28, 28)``, or ``(3, 32, 32)``
    (channels first) for CIFAR-10; ``notes`` records anything a reader of results must know
    (e.g. a substitute split).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, ...] = (frame.FRAME_SIDE, frame.FRAME_SIDE)
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        """Values per image (784 for 28x28, 3072 for 3x32x32)."""
        return int(np.prod(self.image_shape))


def list_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return DATASET_NAMES


def _rows(images: np.ndarray, scale: float) -> np.ndarray:
    """``(N, H, W)`` images divided by ``scale`` as float32 ``(N, H*W)`` rows."""
    return (images.reshape(len(images), -1) / np.float32(scale)).astype(np.float32)


def _check_labels(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, source: Path) -> np.ndarray:
    """``labels`` as int64 after checking count and range against ``images``."""
    if len(labels) != len(images):
        raise DataError(f"{source}: {len(labels)} labels for {len(images)} images")
    if labels.size and labels.max() >= spec.n_classes:
        raise DataError(f"{source}: label {labels.max()} outside 0..{spec.n_classes - 1}")
    return labels.astype(np.int64)


def _read_idx_split(spec: DatasetSpec, paths: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path = paths
    images = formats.read_idx_images(image_path)
    if images.shape[1:] != spec.image_shape:
        raise DataError(f"{image_path}: images are {images.shape[1:]}, expected {spec.image_shape}")
    labels = _check_labels(spec, images, formats.read_idx_labels(label_path), label_path)
    return _rows(images, 255.0), labels


def _load_idx(spec: DatasetSpec, root: Path) -> Dataset:
    x_test, y_test = _read_idx_split(spec, store.require(spec, spec.test, root))
    try:
        x_train, y_train = _read_idx_split(spec, store.require(spec, spec.train, root))
    except store.MissingDataError:
        if spec.name not in _TEST_SPLIT_FALLBACK:
            raise
        n_train = _TEST_SPLIT_FALLBACK[spec.name]
        note = (  # recorded in results, so it names no folder of this machine
            f"{spec.name}: official training files missing from the data folder and not downloadable; "
            f"train/test are the first {n_train} / last {len(x_test) - n_train} images of the official test "
            f"split, so results are not comparable with published {spec.name} numbers"
        )
        # said where it is used, with where it looked; every run's summary and report record the note
        warnings.warn(f"{note} (looked in {root / spec.dirname})", stacklevel=3)
        return _dataset(spec, x_test[:n_train], y_test[:n_train], x_test[n_train:], y_test[n_train:], (note,))
    return _dataset(spec, x_train, y_train, x_test, y_test)


def _load_esl_zip(spec: DatasetSpec, root: Path) -> Dataset:
    (train_path,) = store.require(spec, spec.train, root)
    (test_path,) = store.require(spec, spec.test, root)
    splits = []
    for path in (train_path, test_path):
        images, labels = formats.read_esl_zip(path)
        labels = _check_labels(spec, images, labels, path)
        splits += [_rows(frame.to_mnist_frame((images + 1.0) / 2.0), 1.0), labels]
    note = f"{spec.name}: 16x16 images mapped from [-1, 1] to [0, 1], resized to 20x20 and centred by mass in 28x28"
    return _dataset(spec, *splits, (note,))


def _load_digits(spec: DatasetSpec) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = _rows(frame.to_mnist_frame(bunch.images / 16.0), 1.0)
    y = bunch.target.astype(np.int64)
    n = _DIGITS_N_TRAIN
    note = (
        f"{spec.name}: scikit-learn 8x8 digits scaled from 0..16 to [0, 1], resized to 20x20 and centred by "
        f"mass in 28x28; first {n} images train, last {len(y) - n} test"
    )
    return _dataset(spec, x[:n], y[:n], x[n:], y[n:], (note,))


def _load_cifar(spec: DatasetSpec, root: Path) -> Dataset:
    # hashed now before any unpickling, never taken from a record: the batches are pickles,
    # and a changed archive can keep its size and mtime
    (path,) = store.require(spec, spec.files, root, rehash=True)
    members = formats.CIFAR_TRAIN_MEMBERS + (formats.CIFAR_TEST_MEMBER,)
    batches = formats.read_cifar_batches(path, members)
    splits = []
    for names in (formats.CIFAR_TRAIN_MEMBERS, (formats.CIFAR_TEST_MEMBER,)):
        labels = np.concatenate([_check_labels(spec, *batches[name], f"{path}:{name}") for name in names])
        images = np.concatenate([batches.pop(name)[0] for name in names])
        splits += [np.divide(images, np.float32(255.0), dtype=np.float32), labels]
        del images
    note = (
        f"{spec.name}: 32x32 colour images as 3072 features in [0, 1], channel-major (1024 red, 1024 green, "
        "1024 blue values, each row-major); not put in the 28x28 MNIST frame"
    )
    return _dataset(spec, *splits, (note,))


def _dataset(spec: DatasetSpec, x_train, y_train, x_test, y_test, notes: tuple[str, ...] = ()) -> Dataset:
    """A :class:`Dataset` over the arrays, made read-only."""
    arrays = [np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test)]
    for array in arrays:
        array.setflags(write=False)
    return Dataset(spec.name, *arrays, n_classes=spec.n_classes, image_shape=spec.delivered_shape, notes=notes)


@functools.lru_cache(maxsize=8)
def _load_full(name: str, root: Path | None) -> Dataset:
    spec = get_spec(name)
    if spec.format == "idx":
        return _load_idx(spec, root)
    if spec.format == "esl_zip":
        return _load_esl_zip(spec, root)
    if spec.format == "cifar_tar":
        return _load_cifar(spec, root)
    return _load_digits(spec)


def _prefix_size(name: str, field: str, value: int | None, available: int) -> int:
    if value is None:
        return available
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= available:
        raise ConfigError(f"load_dataset({name!r})", field, value, f"must be an integer in 1..{available} or None")
    return int(value)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Dataset ``name`` (one of :data:`DATASET_NAMES`), downloading missing files if possible.

    ``data_dir`` overrides ``$NEUROSIM_DATA`` (see :func:`neurosim.data.store.resolve_data_dir`);
    ``digits`` needs no files. ``train_size`` / ``test_size`` keep the first that many
    images of each split. Raises :class:`DataError` when files are missing (naming the
    expected paths) or corrupt, :class:`ConfigError` for a bad size.
    """
    spec = get_spec(name)
    root = None if spec.format == "sklearn" else store.resolve_data_dir(data_dir).resolve()
    full = _load_full(name, root)
    n_train = _prefix_size(name, "train_size", train_size, len(full.y_train))
    n_test = _prefix_size(name, "test_size", test_size, len(full.y_test))
    if (n_train, n_test) == (len(full.y_train), len(full.y_test)):
        return full
    return dataclasses.replace(
        full,
        x_train=full.x_train[:n_train],
        y_train=full.y_train[:n_train],
        x_test=full.x_test[:n_test],
        y_test=full.y_test[:n_test],
    )
