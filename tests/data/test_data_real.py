"""The real datasets: shapes, label counts, value ranges, MNIST-frame placement (CIFAR-10:
its native channel-major layout).

Data directory: ``$NEUROSIM_DATA``, else ``../shared/datasets`` beside the repository.
Each dataset's tests are skipped, saying why, when its files are not there. Downloads are
disabled: nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from neurosim.data import DATASET_NAMES, frame, list_datasets, load_dataset, store

REAL_DIR = Path(os.environ.get("NEUROSIM_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets")
TEN = np.arange(10)


def needs(dirname: str, filename: str):
    path = REAL_DIR / dirname / filename
    return pytest.mark.skipif(not path.is_file(), reason=f"{path} not found (set NEUROSIM_DATA to the datasets directory)")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def refuse(url, destination):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(store, "download", refuse)


def counts(labels):
    return np.bincount(labels, minlength=10).tolist()


def check_common(data, n_train, n_test):
    assert data.x_train.shape == (n_train, 784) and data.x_test.shape == (n_test, 784)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    assert data.n_classes == 10 and data.image_shape == (28, 28) and data.n_features == 784
    for x in (data.x_train, data.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert not data.x_train.flags.writeable and not data.y_test.flags.writeable


def test_names():
    assert list_datasets() == DATASET_NAMES == ("mnist", "fashion_mnist", "kmnist", "usps", "digits", "cifar10")


@needs("mnist", "train-images-idx3-ubyte.gz")
def test_mnist():
    data = load_dataset("mnist", REAL_DIR)
    check_common(data, 60000, 10000)
    assert counts(data.y_test) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert counts(data.y_train) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.notes == ()
    assert data.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels


@needs("mnist", "t10k-images-idx3-ubyte.gz")
def test_mnist_centre_of_mass_convention_matches_frame_module():
    """MNIST moved digits by whole pixels so that the centre of mass is within 0.5 px of (14, 14)."""
    com = frame.centres_of_mass(load_dataset("mnist", REAL_DIR).x_test.reshape(-1, 28, 28))
    assert np.all(np.abs(com - frame.MNIST_CENTRE) <= 0.5 + 1e-6)
    np.testing.assert_allclose(com.mean(axis=0), frame.MNIST_CENTRE, atol=0.02)


@needs("mnist", "train-images-idx3-ubyte.gz")
def test_prefix_sizes_share_the_cached_arrays():
    full = load_dataset("mnist", REAL_DIR)
    small = load_dataset("mnist", REAL_DIR, train_size=1000, test_size=100)
    assert small.x_train.shape == (1000, 784) and small.y_test.shape == (100,)
    assert np.shares_memory(small.x_train, full.x_train)


@needs("fashion-mnist", "train-images-idx3-ubyte.gz")
def test_fashion_mnist():
    data = load_dataset("fashion_mnist", REAL_DIR)
    check_common(data, 60000, 10000)
    assert counts(data.y_train) == [6000] * 10 and counts(data.y_test) == [1000] * 10
    np.testing.assert_allclose(data.x_train.mean() * 255, 72.940, atol=0.001)  # from PROVENANCE.md


@needs("kmnist", "t10k-images-idx3-ubyte.gz")
def test_kmnist():
    data = load_dataset("kmnist", REAL_DIR)
    if (REAL_DIR / "kmnist" / "train-images-idx3-ubyte.gz").is_file():
        check_common(data, 60000, 10000)
        assert counts(data.y_train) == [6000] * 10 and data.notes == ()
    else:
        check_common(data, 8000, 2000)
        assert counts(data.y_train) == [806, 806, 809, 805, 791, 796, 806, 803, 793, 785]
        assert "first 8000 / last 2000" in data.notes[0]
        np.testing.assert_allclose(np.concatenate([data.x_train, data.x_test]).mean() * 255, 47.062, atol=0.001)


@needs("usps", "zip.train.gz")
def test_usps_counts_range_and_frame():
    data = load_dataset("usps", REAL_DIR)
    check_common(data, 7291, 2007)
    assert counts(data.y_train) == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
    assert counts(data.y_test) == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
    images = data.x_test.reshape(-1, 28, 28)
    np.testing.assert_allclose(frame.centres_of_mass(images), np.tile(frame.MNIST_CENTRE, (2007, 1)), atol=0.05)
    assert "resized to 20x20" in data.notes[0]
    # Background (-1 in the file) becomes exactly 0, and digits fill a 20 px box like MNIST's.
    assert np.median((images > 0).sum(axis=(1, 2))) < 28 * 28 / 2
    heights = [np.ptp(np.flatnonzero(im.max(axis=1) > 0.2)) + 1 for im in images[:200]]
    assert 18 <= np.median(heights) <= 21


def test_digits_split_and_frame():
    data = load_dataset("digits")
    check_common(data, 1437, 360)
    assert counts(data.y_test) == [35, 36, 35, 37, 37, 37, 37, 36, 33, 37]
    com = frame.centres_of_mass(data.x_train.reshape(-1, 28, 28))
    np.testing.assert_allclose(com, np.tile(frame.MNIST_CENTRE, (1437, 1)), atol=0.05)
    assert load_dataset("digits", "/nonexistent") is data  # needs no files


@needs("cifar-10", "cifar-10-python.tar.gz")
def test_cifar10_split_layout_and_channel_means():
    data = load_dataset("cifar10", REAL_DIR)
    assert data.x_train.shape == (50000, 3072) and data.x_test.shape == (10000, 3072)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.image_shape == (3, 32, 32) and data.n_features == 3072
    assert counts(data.y_train) == [5000] * 10 and counts(data.y_test) == [1000] * 10
    assert data.y_train[:5].tolist() == [6, 9, 9, 4, 1]  # frog, truck, truck, deer, automobile
    assert data.y_test[:5].tolist() == [3, 8, 8, 0, 6]  # cat, ship, ship, airplane, frog
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    # The widely quoted per-channel training means (red, green, blue): the layout is channel-major.
    means = data.x_train.reshape(-1, 3, 1024).mean(axis=(0, 2), dtype=np.float64)
    np.testing.assert_allclose(means, [0.49139968, 0.48215841, 0.44653091], atol=1e-5)
