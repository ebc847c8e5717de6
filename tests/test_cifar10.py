"""CIFAR-10: registry entry, loading a tiny synthetic archive with the published structure,
checksum and missing-file errors, the input-width check, and OOD sets skipped for it.

The archive built here has the real layout (``cifar-10-batches-py/data_batch_1..5`` and
``test_batch`` in a ``.tar.gz``, 2 images per batch); the registry's size and sha256 are
replaced by the synthetic file's. The data batches are pickled byte for byte as Python 2's
cPickle wrote the published ones; the test batch as Python 3 writes protocol 2. The network
is never used: ``store.download`` always fails.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from neurosim import ood_eval
from neurosim.cli import main
from neurosim.config import EvaluationConfig, ExperimentConfig, load_experiment
from neurosim.data import Dataset, formats, load_dataset, registry, store
from neurosim.errors import ConfigError, DataError
from neurosim.schema import build

PER_BATCH = 2
RNG = np.random.default_rng(7)
TRAIN_X = RNG.integers(0, 256, size=(5 * PER_BATCH, 3072), dtype=np.uint8)
TRAIN_Y = [3, 1, 4, 1, 5, 9, 2, 6, 5, 0]
ROWS, COLS = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
KNOWN = np.stack([ROWS * 8, COLS * 8, np.full((32, 32), 255)]).astype(np.uint8)  # red, green, blue planes
TEST_X = np.stack([KNOWN.reshape(-1), RNG.integers(0, 256, size=3072, dtype=np.uint8)])
TEST_Y = [7, 8]


def py2_batch(images: np.ndarray, labels: list[int], batch_label: bytes) -> bytes:
    """A batch as Python 2's cPickle wrote CIFAR-10 (protocol 2): byte strings as
    (SHORT_)BINSTRING, the array reconstructor under numpy 1's module name."""

    def string(value: bytes) -> bytes:
        return b"U" + bytes([len(value)]) + value if len(value) < 256 else b"T" + struct.pack("<i", len(value)) + value

    def integer(value: int) -> bytes:
        return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)

    n, width = images.shape
    return b"".join([
        b"\x80\x02}(",
        string(b"batch_label"), string(batch_label),
        string(b"labels"), b"](", *map(integer, labels), b"e",
        string(b"data"),
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n", integer(0), b"\x85", string(b"b"), b"\x87R",
        b"(", integer(1), integer(n), integer(width), b"\x86",
        b"cnumpy\ndtype\n", string(b"u1"), integer(0), integer(1), b"\x87R",
        b"(", integer(3), string(b"|"), b"NNN", integer(-1), integer(-1), integer(0), b"tb",
        b"\x89", string(images.tobytes()), b"tb",
        b"u.",
    ])


def batches() -> dict[str, bytes]:
    members = {}
    for i in range(5):
        rows = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        members[f"cifar-10-batches-py/data_batch_{i + 1}"] = py2_batch(
            TRAIN_X[rows], TRAIN_Y[rows], f"training batch {i + 1} of 5".encode())
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {b"batch_label": b"testing batch 1 of 1", b"labels": TEST_Y, b"data": TEST_X,
         b"filenames": [b"a.png", b"b.png"]}, protocol=2)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)
    return members


def archive_bytes(members: dict[str, bytes]) -> bytes:
    """The tar.gz of ``members``, byte for byte the same on every call (the gzip header's
    time stamp fixed: a test that builds it twice across a second boundary must get the
    same checksum)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w") as archive:
        for name in ["cifar-10-batches-py/batches.meta", *sorted(n for n in members if "batches.meta" not in n)]:
            if name in members:
                info = tarfile.TarInfo(name)
                info.size = len(members[name])
                archive.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()


ARCHIVE = archive_bytes(batches())
REAL = registry.SPECS["cifar10"]


def register(monkeypatch, content: bytes = ARCHIVE) -> registry.DatasetSpec:
    """Make the registry accept ``content`` as the CIFAR-10 archive (its size and sha256)."""
    file = dataclasses.replace(REAL.train[0], size=len(content), gz_sha256=hashlib.sha256(content).hexdigest())
    spec = dataclasses.replace(REAL, train=(file,), test=(file,))
    monkeypatch.setitem(registry.SPECS, "cifar10", spec)
    return spec


def place(root: Path, content: bytes = ARCHIVE) -> Path:
    path = root / "cifar-10" / "cifar-10-python.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(store, "download", lambda url, destination: (_ for _ in ()).throw(OSError("offline")))


@pytest.fixture
def synthetic(monkeypatch, tmp_path) -> Path:
    """A data directory holding the synthetic archive, registered as cifar10."""
    register(monkeypatch)
    place(tmp_path / "data")
    return tmp_path / "data"


def test_registry_entry_is_the_canonical_archive():
    (file,) = REAL.files
    assert REAL.train == REAL.test == (file,)
    assert file.filename == "cifar-10-python.tar.gz" and file.size == 170498071
    assert file.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert file.checksum == ("gz_sha256", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
    assert (REAL.dirname, REAL.n_classes, REAL.n_train, REAL.n_test) == ("cifar-10", 10, 50000, 10000)
    assert REAL.features == 3072 and REAL.delivered_shape == (3, 32, 32)
    assert {name: spec.features for name, spec in registry.SPECS.items() if name != "cifar10"} == dict.fromkeys(
        ("mnist", "fashion_mnist", "kmnist", "usps", "digits"), 784)


def test_load_gives_3072_features_in_0_1_with_splits_in_published_order(synthetic):
    data = load_dataset("cifar10", synthetic)
    assert data.x_train.shape == (10, 3072) and data.x_test.shape == (2, 3072)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.image_shape == (3, 32, 32) and data.n_features == 3072 and data.n_classes == 10
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.x_test.max() == 1.0
    np.testing.assert_array_equal(data.x_train, TRAIN_X / np.float32(255))  # batches 1..5 in order
    np.testing.assert_array_equal(data.y_train, TRAIN_Y)
    np.testing.assert_array_equal(data.x_test, TEST_X / np.float32(255))  # test_batch
    np.testing.assert_array_equal(data.y_test, TEST_Y)
    assert len(data.notes) == 1 and "channel-major" in data.notes[0]
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert not array.flags.writeable
    small = load_dataset("cifar10", synthetic, train_size=3, test_size=1)
    np.testing.assert_array_equal(small.y_train, TRAIN_Y[:3])


def test_pixel_order_is_red_plane_first_each_row_major(synthetic):
    image = load_dataset("cifar10", synthetic).x_test[0]
    assert image[5 * 32 + 7] == np.float32(5 * 8 / 255)  # red (5, 7) = row * 8
    assert image[1024 + 5 * 32 + 7] == np.float32(7 * 8 / 255)  # green (5, 7) = column * 8
    assert np.all(image[2048:] == 1.0)  # blue plane
    np.testing.assert_array_equal(image.reshape(3, 32, 32), KNOWN / np.float32(255))


def test_a_corrupted_byte_is_a_checksum_error(monkeypatch, tmp_path, capsys):
    spec = register(monkeypatch)
    damaged = bytearray(ARCHIVE)
    damaged[len(damaged) // 2] ^= 0xFF
    path = place(tmp_path, bytes(damaged))
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: sha256 of the .gz file is {hashlib.sha256(damaged).hexdigest()}, "
                              f"expected {spec.train[0].gz_sha256}")
    assert "`neurosim data fetch cifar10` to replace it" in message
    assert main(["data", "verify", "cifar10", "--data-dir", str(tmp_path)]) == 1
    assert f"corrupt  {path}: sha256 of the .gz file is" in capsys.readouterr().out


def test_an_archive_changed_after_its_digest_was_recorded_is_refused(monkeypatch, tmp_path):
    """Loading takes other files' digests from the record kept for their size and mtime; the
    CIFAR-10 archive holds pickles and is read only up to its last wanted batch (so the
    gzip CRC is not reached), and is hashed at every load instead (a byte changed with
    size and mtime kept was loaded as changed pixels)."""
    import os

    from neurosim.data import loaders

    register(monkeypatch)
    path = place(tmp_path)
    load_dataset("cifar10", tmp_path)  # the digest is recorded
    stat = path.stat()
    damaged = bytearray(ARCHIVE)
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    store._DIGESTS.clear()
    loaders._load_full.cache_clear()  # a new process
    with pytest.raises(DataError, match="sha256 of the .gz file is"):
        load_dataset("cifar10", tmp_path)


def test_a_truncated_archive_is_named_as_such(monkeypatch, tmp_path):
    register(monkeypatch)
    path = place(tmp_path, ARCHIVE[:1000])
    with pytest.raises(DataError, match=rf"file is 1000 bytes, expected {len(ARCHIVE)} \(truncated"):
        load_dataset("cifar10", tmp_path)
    assert store.check_file(path, registry.SPECS["cifar10"].train[0]).state == "corrupt"


def test_archive_problems_after_the_checksum_are_clear_errors(monkeypatch, tmp_path):
    """A file that passes its checksum but is not the python archive (or holds a pickle of
    anything but arrays) is refused with the member named."""
    members = batches()
    del members["cifar-10-batches-py/data_batch_3"]
    register(monkeypatch, archive_bytes(members))
    place(tmp_path / "a", archive_bytes(members))
    with pytest.raises(DataError, match="archive has no member cifar-10-batches-py/data_batch_3"):
        load_dataset("cifar10", tmp_path / "a")

    members = batches()
    members["cifar-10-batches-py/test_batch"] = pickle.dumps({b"data": Path("x"), b"labels": []}, protocol=2)
    register(monkeypatch, archive_bytes(members))
    place(tmp_path / "b", archive_bytes(members))
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 batch pickle .*refusing to load global pathlib"):
        load_dataset("cifar10", tmp_path / "b")

    members = batches()
    members["cifar-10-batches-py/test_batch"] = pickle.dumps({b"data": TEST_X, b"labels": [7, 10]}, protocol=2)
    register(monkeypatch, archive_bytes(members))
    place(tmp_path / "c", archive_bytes(members))
    with pytest.raises(DataError, match=r"test_batch: label 10 outside 0\.\.9"):
        load_dataset("cifar10", tmp_path / "c")

    register(monkeypatch, b"not a tar.gz")
    place(tmp_path / "d", b"not a tar.gz")
    with pytest.raises(DataError, match="not a valid or complete tar.gz archive"):
        load_dataset("cifar10", tmp_path / "d")


def test_batch_parser_checks_the_array():
    bad = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
    with pytest.raises(DataError, match=r"src: b'data' is a uint8 array of shape \(2, 100\), expected an \(N, 3072\)"):
        formats.parse_cifar_batch(bad, "src")


def write_experiment(path: Path, dims, dataset="cifar10", **extra) -> Path:
    config = {"name": "cifar-tiny", "network": {"dims": list(dims)}, "data": {"dataset": dataset}, **extra}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_missing_archive_offline_says_where_to_put_it(tmp_path, capsys):
    target = tmp_path / "empty" / "cifar-10" / "cifar-10-python.tar.gz"
    assert main(["data", "verify", "cifar10", "--data-dir", str(tmp_path / "empty")]) == 1
    assert f"missing  {target}" in capsys.readouterr().out
    assert main(["data", "fetch", "cifar10", "--data-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz failed: offline" in err
    assert f"save it as {target}" in err

    experiment = write_experiment(tmp_path / "exp.yaml", [3072, 16, 10], precondition={"enabled": False},
                                  evaluation={"noise_probe_size": 8}, simulation={"backend": "numpy"})
    status = main(["run", str(experiment), "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                   "--quiet", "--no-run-reports"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: cifar10: 1 file(s) missing")
    assert f"save it as {target}" in err and "NEUROSIM_DATA" in err and "cifar-10/cifar-10-python.tar.gz" in err


def test_data_list_shows_cifar10(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["cifar10"] == ["10", "50000", "10000", "missing"]


def test_experiment_input_width_must_match_the_dataset(tmp_path):
    path = write_experiment(tmp_path / "exp.yaml", [784, 100, 10])
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert (info.value.source, info.value.path, info.value.value) == (str(path), "network.dims[0]", 784)
    assert info.value.allowed == "must equal the dataset's 3072 input features (cifar10 images are 3x32x32)"
    assert build(ExperimentConfig, {"name": "x", "network": {"dims": [3072, 100, 10]},
                                    "data": {"dataset": "cifar10"}}, "t").network.dims[0] == 3072
    with pytest.raises(ConfigError, match=r"network.dims\[0\] = 3072: must equal the dataset's 784 input features "
                                          r"\(mnist images are 28x28\)"):
        build(ExperimentConfig, {"name": "x", "network": {"dims": [3072, 100, 10]}, "data": {"dataset": "mnist"}}, "t")


def fake_dataset(name: str, shape: tuple[int, ...]) -> Dataset:
    x = np.zeros((2, int(np.prod(shape))), np.float32)
    y = np.zeros(2, np.int64)
    return Dataset(name, x, y, x, y, n_classes=10, image_shape=shape)


def test_ood_transforms_and_other_widths_are_skipped_without_loading(monkeypatch):
    monkeypatch.setattr(ood_eval, "load_dataset", lambda *a, **k: pytest.fail("must not load"))
    config = EvaluationConfig(ood=("translate", "rotate", "scale", "usps", "digits", "mnist"))
    sets = list(ood_eval.ood_test_sets(fake_dataset("cifar10", (3, 32, 32)), config, None))
    framed = [name for name, *_ in ood_eval.ood_test_sets(fake_dataset("kmnist", (28, 28)),
                                                          dataclasses.replace(config, ood=("translate", "rotate", "scale")),
                                                          None)]
    assert [name for name, *_ in sets] == framed + ["usps", "digits", "mnist"]
    assert all(x is None and reason.startswith("skipped: ") for _, x, reason in sets)
    reasons = dict((name, reason) for name, _, reason in sets)
    assert reasons["rotate_15deg"] == ("skipped: the rotate transform works on 28x28 grey images; "
                                       "cifar10 images are 3x32x32")
    assert reasons["usps"] == "skipped: usps images have 784 input features, the network takes cifar10's 3072"

    config = EvaluationConfig(ood=("cifar10",))
    ((name, x, reason),) = ood_eval.ood_test_sets(fake_dataset("mnist", (28, 28)), config, None)
    assert name == "cifar10" and x is None and "cifar10 images have 3072 input features" in reason


def test_tiny_training_run_on_synthetic_cifar10_skips_the_transforms(synthetic, tmp_path, capsys):
    experiment = write_experiment(
        tmp_path / "exp.yaml", [3072, 16, 10],
        precondition={"enabled": False}, train={"epochs": 1, "batch_size": 4},
        evaluation={"train_probe_size": 10, "gradient_probe_size": 4, "noise_probe_size": 8},
        simulation={"backend": "numpy"})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--data-dir", str(synthetic), "--out", str(out), "--quiet",
                 "--no-run-reports"]) == 0
    (path,) = out.rglob("summary.json")
    summary = json.loads(path.read_text())
    assert summary["dataset"] == "cifar10" and summary["dims"] == [3072, 16, 10]
    ood = summary["final"]["ood"]
    transforms = ["translate_2px", "translate_4px", "rotate_15deg", "rotate_30deg", "rotate_45deg",
                  "scale_0.7x", "scale_1.3x"]
    assert sorted(ood) == sorted(["in_distribution", *transforms])
    assert all(ood[name].startswith("skipped: the ") for name in transforms)
    assert 0.0 <= ood["in_distribution"] <= 1.0
