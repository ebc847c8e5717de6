"""What each dataset is made of: files, checksums, download addresses, shapes, licence.

Every file-backed dataset lives in ``<data dir>/<spec.dirname>/<file.filename>`` (see
:mod:`neurosim.data.store`). A file is identified by one checksum:

* ``sha256``: SHA-256 of the *decompressed* content (gzip removed). Preferred, because
  re-compressing a file (as was done for the local MNIST copy) changes the ``.gz`` bytes
  but not the content.
* ``gz_md5``: MD5 of the file exactly as downloaded, used where only the publisher's
  checksum of the ``.gz`` is known (KMNIST training images).
* ``gz_sha256``: SHA-256 of the file exactly as downloaded, for archives that are read in
  place and never decompressed as a whole (the CIFAR-10 ``.tar.gz``). Here ``size`` is the
  downloaded file's size, checked before hashing so that a truncated download is named as
  such.

The sha256 values below were computed from the copies in ``/work/shared/datasets``; for
MNIST they equal the values in that copy's PROVENANCE.md, for USPS ``zip.test`` they equal
an independent copy's, and for Fashion-MNIST / KMNIST the ``.gz`` files match the
publishers' md5s. The CIFAR-10 archive's size and sha256 are those published with Keras's
``cifar10.load_data`` (its md5, c58f30108f718f92721af3b95e74349a, is torchvision's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurosim.errors import DataError

@dataclass(frozen=True)
class FileSpec:
    """One data file: where it comes from and how to recognise the right bytes.

    ``size`` is the decompressed size in bytes (for ``gz_sha256``: the downloaded file's
    size). Exactly one of ``sha256`` (of the decompressed content), ``gz_md5`` and
    ``gz_sha256`` (of the file as downloaded) is given.
    """

    filename: str
    size: int
    urls: tuple[str, ...]
    sha256: str | None = None
    gz_md5: str | None = None
    gz_sha256: str | None = None

    def __post_init__(self) -> None:
        if sum(digest is not None for digest in (self.sha256, self.gz_md5, self.gz_sha256)) != 1:
            raise ValueError(f"{self.filename}: give exactly one of sha256, gz_md5 and gz_sha256")

    @property
    def checksum(self) -> tuple[str, str]:
        """``(kind, hex digest)``; kind is ``"sha256"`` (decompressed), ``"gz_md5"`` or ``"gz_sha256"``."""
        if self.sha256 is not None:
            return "sha256", self.sha256
        if self.gz_md5 is not None:
            return "gz_md5", self.gz_md5
        return "gz_sha256", self.gz_sha256  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as published: native image shape, class count, split sizes and files.

    ``image_shape`` is the published (native) shape in pixels. ``delivered_shape`` is the
    shape of each image as :func:`neurosim.data.load_dataset` delivers it (its rows reshape
    to it): the 28x28 MNIST frame for the grey digit and clothing datasets, ``(3, 32, 32)``
    channel-major for CIFAR-10; :attr:`features` is its size, the network's input width.
    ``format`` is ``"idx"`` (each split holds ``(images, labels)`` files), ``"esl_zip"``
    (each split holds one text file with both), ``"cifar_tar"`` (one ``.tar.gz`` of pickled
    batches holds both splits, so ``train`` and ``test`` name the same file) or
    ``"sklearn"`` (bundled with scikit-learn, no files). ``dirname`` is the dataset's
    directory under the data directory.
    """

    name: str
    description: str
    image_shape: tuple[int, int]
    n_classes: int
    n_train: int
    n_test: int
    format: str
    dirname: str
    train: tuple[FileSpec, ...]
    test: tuple[FileSpec, ...]
    licence: str
    delivered_shape: tuple[int, ...] = (28, 28)

    @property
    def features(self) -> int:
        """Input features per delivered image: 784 in the 28x28 frame, 3072 for CIFAR-10."""
        return math.prod(self.delivered_shape)

    @property
    def files(self) -> tuple[FileSpec, ...]:
        """Every file of the dataset once, train split first."""
        return tuple(dict.fromkeys(self.train + self.test))


def _idx_files(base_url: str, checksums: dict[str, dict[str, str]], n_train: int, n_test: int):
    """Train and test ``(images, labels)`` IDX file specs for a 28x28 MNIST-like dataset.

    ``checksums`` maps each decompressed file stem to ``{"sha256": ...}`` or ``{"gz_md5": ...}``.
    """

    def spec(stem: str, size: int) -> FileSpec:
        filename = f"{stem}.gz"
        return FileSpec(filename=filename, size=size, urls=(base_url + filename,), **checksums[stem])

    def split(prefix: str, n: int) -> tuple[FileSpec, FileSpec]:
        return (
            spec(f"{prefix}-images-idx3-ubyte", 16 + n * 28 * 28),
            spec(f"{prefix}-labels-idx1-ubyte", 8 + n),
        )

    return split("train", n_train), split("t10k", n_test)


_MNIST_TRAIN, _MNIST_TEST = _idx_files(
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {
        "train-images-idx3-ubyte": {"sha256": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
        "train-labels-idx1-ubyte": {"sha256": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
        "t10k-images-idx3-ubyte": {"sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
        "t10k-labels-idx1-ubyte": {"sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
    },
    60000,
    10000,
)

_FASHION_TRAIN, _FASHION_TEST = _idx_files(
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {
        "train-images-idx3-ubyte": {"sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
        "train-labels-idx1-ubyte": {"sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
        "t10k-images-idx3-ubyte": {"sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
        "t10k-labels-idx1-ubyte": {"sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
    },
    60000,
    10000,
)

_KMNIST_TRAIN, _KMNIST_TEST = _idx_files(
    "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    {
        # No copy of the training images was available, so only the publisher's md5 of the .gz is known.
        "train-images-idx3-ubyte": {"gz_md5": "bdb82020997e1d708af4cf47b453dcf7"},
        "train-labels-idx1-ubyte": {"sha256": "2a16eeae62da984b8bd24fa32e31d47291f01dac3fe84d5594f304f71e7d374b"},
        "t10k-images-idx3-ubyte": {"sha256": "76fbd229ce87db80dd281af5e6670de4ad0e42fb30a7bd643972994c47c1f42e"},
        "t10k-labels-idx1-ubyte": {"sha256": "a11dc742be8e781a40a92f53d6a4957e7b7d36df2faa097659131ebfd8fd60c6"},
    },
    60000,
    10000,
)

_USPS_URL = "https://hastie.su.domains/ElemStatLearn/datasets/"

#: The CIFAR-10 "python version": one archive holding both splits as pickled batches
#: (see :func:`neurosim.data.formats.read_cifar_batches`).
_CIFAR10_ARCHIVE = FileSpec(
    filename="cifar-10-python.tar.gz",
    size=170498071,
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    gz_sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)

SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mnist",
            description="MNIST handwritten digits, 28x28 grey",
            image_shape=(28, 28),
            n_classes=10,
            n_train=60000,
            n_test=10000,
            format="idx",
            dirname="mnist",
            train=_MNIST_TRAIN,
            test=_MNIST_TEST,
            licence="LeCun, Cortes & Burges, The MNIST database of handwritten digits (CC BY-SA 3.0)",
        ),
        DatasetSpec(
            name="fashion_mnist",
            description="Fashion-MNIST Zalando article images, 28x28 grey",
            image_shape=(28, 28),
            n_classes=10,
            n_train=60000,
            n_test=10000,
            format="idx",
            dirname="fashion-mnist",
            train=_FASHION_TRAIN,
            test=_FASHION_TEST,
            licence="Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747 (MIT licence, Zalando SE)",
        ),
        DatasetSpec(
            name="kmnist",
            description="Kuzushiji-MNIST cursive Japanese characters, 28x28 grey",
            image_shape=(28, 28),
            n_classes=10,
            n_train=60000,
            n_test=10000,
            format="idx",
            dirname="kmnist",
            train=_KMNIST_TRAIN,
            test=_KMNIST_TEST,
            licence="Clanuwat et al. 2018, arXiv:1812.01718 (CC BY-SA 4.0, ROIS-DS CODH / NIJL)",
        ),
        DatasetSpec(
            name="usps",
            description="USPS handwritten digits (ESL 'zip' text version), 16x16 grey in [-1, 1]",
            image_shape=(16, 16),
            n_classes=10,
            n_train=7291,
            n_test=2007,
            format="esl_zip",
            dirname="usps",
            train=(
                FileSpec(
                    filename="zip.train.gz",
                    size=14512253,
                    urls=(_USPS_URL + "zip.train.gz",),
                    sha256="abc9f5c75b997cabe66b5d01727d5a681c69298e1641a8d37b55433a52129dc0",
                ),
            ),
            test=(
                FileSpec(
                    filename="zip.test.gz",
                    size=2029542,
                    urls=(_USPS_URL + "zip.test.gz",),
                    sha256="6bde17b4f1cd68e0630cd2751d6495b5795d9165ab2dc4a0be8b7002b732f4cc",
                ),
            ),
            licence="Le Cun et al. 1990; as distributed with Hastie, Tibshirani & Friedman, The Elements of Statistical Learning",
        ),
        DatasetSpec(
            name="digits",
            description="scikit-learn's bundled UCI optical digits, 8x8 grey in 0..16 (no download)",
            image_shape=(8, 8),
            n_classes=10,
            n_train=1437,
            n_test=360,
            format="sklearn",
            dirname="digits",
            train=(),
            test=(),
            licence="Alpaydin & Kaynak 1998, UCI Optical Recognition of Handwritten Digits (CC BY 4.0), via sklearn.datasets.load_digits",
        ),
        DatasetSpec(
            name="cifar10",
            description="CIFAR-10 natural images, 32x32 RGB, delivered as 3072 channel-major features",
            image_shape=(32, 32),
            n_classes=10,
            n_train=50000,
            n_test=10000,
            format="cifar_tar",
            dirname="cifar-10",
            train=(_CIFAR10_ARCHIVE,),
            test=(_CIFAR10_ARCHIVE,),
            licence="Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images, tech. report, U. Toronto "
            "(no licence stated; https://www.cs.toronto.edu/~kriz/cifar.html asks that the report be cited)",
            delivered_shape=(3, 32, 32),
        ),
    )
}

#: Every dataset name accepted by :func:`neurosim.data.load_dataset`.
DATASET_NAMES: tuple[str, ...] = tuple(SPECS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; :class:`DataError` listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}") from None
