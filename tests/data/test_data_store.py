"""Data directory resolution, checksums and their cache, download, and loading of a small
synthetic IDX dataset (registered for the test) including the offline failure paths.

The network is never used: ``store.download`` is replaced in every test.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from neurosim.data import formats, load_dataset, registry, store
from neurosim.errors import ConfigError, DataError

REAL_DIR = Path(os.environ.get("NEUROSIM_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets")


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


RNG = np.random.default_rng(0)
TRAIN_X = RNG.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
TRAIN_Y = np.arange(12, dtype=np.uint8) % 3
TEST_X = RNG.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
TEST_Y = np.array([2, 1, 0, 1, 2], dtype=np.uint8)
CONTENT = {
    "train-images-idx3-ubyte.gz": idx_bytes(TRAIN_X),
    "train-labels-idx1-ubyte.gz": idx_bytes(TRAIN_Y),
    "t10k-images-idx3-ubyte.gz": idx_bytes(TEST_X),
    "t10k-labels-idx1-ubyte.gz": idx_bytes(TEST_Y),
}
URL = "https://example.invalid/tiny/"


def file_spec(filename: str) -> registry.FileSpec:
    data = CONTENT[filename]
    return registry.FileSpec(filename, len(data), (URL + filename,), sha256=hashlib.sha256(data).hexdigest())


TINY = registry.DatasetSpec(
    name="tiny",
    description="synthetic",
    image_shape=(28, 28),
    n_classes=3,
    n_train=12,
    n_test=5,
    format="idx",
    dirname="tiny-dir",
    train=(file_spec("train-images-idx3-ubyte.gz"), file_spec("train-labels-idx1-ubyte.gz")),
    test=(file_spec("t10k-images-idx3-ubyte.gz"), file_spec("t10k-labels-idx1-ubyte.gz")),
    licence="none",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Register the tiny dataset and make every download fail; record attempted URLs."""
    attempts = []

    def refuse(url, destination):
        attempts.append(url)
        raise OSError("network disabled in tests")

    monkeypatch.setitem(registry.SPECS, "tiny", TINY)
    monkeypatch.setattr(store, "download", refuse)
    return attempts


def serve(monkeypatch, payload=lambda filename: gzip.compress(CONTENT[filename])):
    """Make downloads succeed, writing ``payload(filename)``; return the list of fetched URLs."""
    fetched = []

    def fake_download(url, destination):
        fetched.append(url)
        Path(destination).write_bytes(payload(url.rsplit("/", 1)[1]))

    monkeypatch.setattr(store, "download", fake_download)
    return fetched


def populate(root: Path, names=tuple(CONTENT)) -> Path:
    directory = root / "tiny-dir"
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(gzip.compress(CONTENT[name]))
    return directory


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROSIM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert store.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("NEUROSIM_DATA")
    assert store.resolve_data_dir() == tmp_path / "xdg" / "neurosim" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.resolve_data_dir() == tmp_path / "home" / ".cache" / "neurosim" / "data"


def test_verify_reports_ok_missing_and_corrupt_with_expected_and_actual(tmp_path):
    directory = populate(tmp_path, names=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"))
    wrong = idx_bytes(np.zeros(5, np.uint8))
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(wrong))
    states = {s.path.name: s for s in store.verify("tiny", tmp_path)}
    assert states["train-images-idx3-ubyte.gz"].state == "ok"
    assert states["t10k-labels-idx1-ubyte.gz"].state == "missing"
    corrupt = states["train-labels-idx1-ubyte.gz"]
    assert corrupt.state == "corrupt"
    assert hashlib.sha256(wrong).hexdigest() in corrupt.detail
    assert TINY.train[1].sha256 in corrupt.detail
    assert corrupt.path == directory / "train-labels-idx1-ubyte.gz"


def test_checksum_is_over_decompressed_bytes(tmp_path):
    """Re-compressing (different .gz bytes, same content) still verifies."""
    directory = populate(tmp_path)
    path = directory / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(CONTENT[path.name], compresslevel=1, mtime=12345))
    assert store.check_file(path, TINY.test[1]).ok


def test_gz_md5_spec_is_checked_on_the_raw_file(tmp_path):
    raw = gzip.compress(b"payload", mtime=0)
    path = tmp_path / "f.gz"
    path.write_bytes(raw)
    good = registry.FileSpec("f.gz", 7, ("u",), gz_md5=hashlib.md5(raw).hexdigest())
    bad = registry.FileSpec("f.gz", 7, ("u",), gz_md5="0" * 32)
    assert store.check_file(path, good).ok
    status = store.check_file(path, bad)
    assert status.state == "corrupt" and "md5 of the .gz file" in status.detail and "0" * 32 in status.detail


def test_file_spec_needs_exactly_one_checksum():
    with pytest.raises(ValueError):
        registry.FileSpec("f", 1, ("u",))
    with pytest.raises(ValueError):
        registry.FileSpec("f", 1, ("u",), sha256="a", gz_md5="b")


def test_truncated_gzip_is_reported_corrupt(tmp_path):
    directory = populate(tmp_path)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    status = store.check_file(path, TINY.train[0])
    assert status.state == "corrupt" and "truncated gzip" in status.detail


def test_unreadable_file_is_named_in_one_line_not_a_traceback(monkeypatch, tmp_path):
    directory = populate(tmp_path)
    unreadable = directory / "t10k-images-idx3-ubyte.gz"
    real_open = open

    def no_permission(file, *args, **kwargs):  # a chmod 000 is no use: root reads anyway
        if Path(file) == unreadable:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_permission)
    status = store.check_file(unreadable, TINY.test[0])
    assert (status.state, status.detail) == ("corrupt", "cannot read (Permission denied)")
    with pytest.raises(DataError, match=rf"^{unreadable}: cannot read \(Permission denied\); delete it or run"):
        load_dataset("tiny", tmp_path)


def test_digest_cache_avoids_rehashing_and_notices_changes(monkeypatch, tmp_path):
    directory = populate(tmp_path)
    path = directory / "train-images-idx3-ubyte.gz"
    calls = []
    real = store.compute_digest
    monkeypatch.setattr(store, "compute_digest", lambda p, f: calls.append(p) or real(p, f))
    assert store.check_file(path, TINY.train[0]).ok
    assert store.check_file(path, TINY.train[0]).ok
    assert len(calls) == 1
    assert (directory / store.SIDECAR_NAME).is_file()

    store._DIGESTS.clear()  # a new process: the sidecar answers
    assert store.check_file(path, TINY.train[0]).ok
    assert len(calls) == 1

    path.write_bytes(gzip.compress(idx_bytes(np.ones((12, 28, 28), np.uint8))))
    os.utime(path, ns=(1, 1))  # content and mtime changed: must rehash
    assert store.check_file(path, TINY.train[0]).state == "corrupt"
    assert len(calls) == 2


def test_verify_hashes_again_and_sees_a_change_that_kept_size_and_mtime(tmp_path):
    """Bit rot, or a bad copy that keeps times: the recorded digest still matches size and
    mtime. Loading trusts it (the gzip CRC catches most changes there); ``neurosim data
    verify`` hashes again, and then records the truth for the next load (before, it said
    ok)."""
    directory = populate(tmp_path)
    path = directory / "train-labels-idx1-ubyte.gz"
    assert store.verify("tiny", tmp_path) and store.check_file(path, TINY.train[1]).ok
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01  # the gzip trailer's CRC: the file's sha256 changes, its size does not
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    store._DIGESTS.clear()  # a new process
    assert store.check_file(path, TINY.train[1]).ok  # the recorded digest answers
    assert store.check_file(path, TINY.train[1], rehash=True).state == "corrupt"
    store._DIGESTS.clear()
    assert store.check_file(path, TINY.train[1]).state == "corrupt"  # recorded by the rehash


def test_read_only_directory_gets_no_sidecar_and_no_download(offline, tmp_path):
    directory = populate(tmp_path, names=("train-images-idx3-ubyte.gz",))
    directory.chmod(0o555)
    try:
        assert store.check_file(directory / "train-images-idx3-ubyte.gz", TINY.train[0]).ok
        assert not (directory / store.SIDECAR_NAME).exists()
        with pytest.raises(store.MissingDataError, match="read-only") as info:
            store.fetch_file(TINY, TINY.test[0], tmp_path)
        assert str(directory / "t10k-images-idx3-ubyte.gz") in str(info.value)
        assert offline == []  # refused before touching the network
    finally:
        directory.chmod(0o755)


def test_fetch_downloads_missing_files_atomically(monkeypatch, tmp_path):
    populate(tmp_path, names=("train-images-idx3-ubyte.gz",))
    fetched = serve(monkeypatch)
    statuses = store.fetch("tiny", tmp_path)
    assert all(s.ok for s in statuses) and len(statuses) == 4
    assert sorted(fetched) == sorted(URL + f.filename for f in TINY.files[1:])
    assert not list((tmp_path / "tiny-dir").glob("*.part"))


def test_fetch_deletes_the_parts_of_killed_downloads_but_not_a_live_one(monkeypatch, tmp_path):
    """A download killed midway left its temporary (as large as the file) for ever."""
    directory = tmp_path / "tiny-dir"
    directory.mkdir()
    abandoned = directory / ".t10k-labels-idx1-ubyte.gz.k1Lled_w.part"
    live = directory / ".t10k-labels-idx1-ubyte.gz.Live_dl8.part"
    other = directory / ".t10k-labels-idx1-ubyte.gz.notes.txt"  # not neurosim's
    for path in (abandoned, live, other):
        path.write_bytes(b"half a download")
    old = os.stat(live).st_mtime - store.ABANDONED_PART_S - 1
    os.utime(abandoned, (old, old))
    os.utime(other, (old, old))
    serve(monkeypatch)
    assert all(s.ok for s in store.fetch("tiny", tmp_path))
    assert not abandoned.exists() and live.exists() and other.exists()


def test_fetch_rejects_a_download_with_the_wrong_checksum(monkeypatch, tmp_path):
    serve(monkeypatch, payload=lambda filename: gzip.compress(b"not the data"))
    with pytest.raises(store.MissingDataError) as info:
        store.fetch("tiny", tmp_path)
    message = str(info.value)
    assert "gave a corrupt file" in message and URL + "t10k-labels-idx1-ubyte.gz" in message
    assert not any((tmp_path / "tiny-dir").iterdir())  # nothing half-written left behind


def test_fetch_offline_says_which_url_failed_and_where_to_put_the_file(tmp_path):
    with pytest.raises(DataError) as info:
        store.fetch("tiny", tmp_path)
    message = str(info.value)
    assert URL + "train-images-idx3-ubyte.gz failed: network disabled in tests" in message
    assert f"save it as {tmp_path / 'tiny-dir' / 'train-images-idx3-ubyte.gz'}" in message


def test_load_missing_offline_names_path_and_env_var(offline, tmp_path):
    populate(tmp_path, names=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError) as info:
        load_dataset("tiny", tmp_path)
    message = str(info.value)
    assert "NEUROSIM_DATA" in message
    assert str(tmp_path / "tiny-dir" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "tiny-dir" / "train-labels-idx1-ubyte.gz") in message
    assert URL + "train-images-idx3-ubyte.gz" in offline


def test_load_fetches_missing_files_then_loads(monkeypatch, tmp_path):
    serve(monkeypatch)
    data = load_dataset("tiny", tmp_path)
    np.testing.assert_array_equal(data.y_train, TRAIN_Y)


def test_load_refuses_a_corrupt_file_with_a_fix(tmp_path):
    directory = populate(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: sha256 .* `neurosim data fetch tiny` to replace it"):
        load_dataset("tiny", tmp_path)


def test_load_synthetic_dataset_values_types_and_prefixes(tmp_path):
    populate(tmp_path)
    data = load_dataset("tiny", tmp_path)
    assert data.x_train.shape == (12, 784) and data.x_test.shape == (5, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train, TRAIN_X.reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, TEST_Y)
    assert data.n_classes == 3 and data.n_features == 784 and data.notes == ()
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert not array.flags.writeable
    assert load_dataset("tiny", tmp_path) is data  # cached per process

    small = load_dataset("tiny", tmp_path, train_size=4, test_size=2)
    np.testing.assert_array_equal(small.x_train, data.x_train[:4])
    np.testing.assert_array_equal(small.y_test, data.y_test[:2])
    assert not small.x_train.flags.writeable
    for bad in (0, 13, 2.5, True):
        with pytest.raises(ConfigError, match="train_size"):
            load_dataset("tiny", tmp_path, train_size=bad)


def test_label_out_of_range_is_rejected(monkeypatch, tmp_path):
    bad_labels = idx_bytes(np.array([0, 1, 2, 3, 0], np.uint8))
    spec = registry.FileSpec("t10k-labels-idx1-ubyte.gz", 13, (URL,), sha256=hashlib.sha256(bad_labels).hexdigest())
    monkeypatch.setitem(registry.SPECS, "tiny", dataclasses.replace(TINY, test=(TINY.test[0], spec)))
    directory = populate(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bad_labels))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: label 3 outside 0\.\.2"):
        load_dataset("tiny", tmp_path)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="unknown dataset 'nope'; known: mnist, fashion_mnist, kmnist, usps, digits"):
        load_dataset("nope")


@pytest.mark.skipif(not (REAL_DIR / "kmnist" / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"no KMNIST copy at {REAL_DIR}")
def test_kmnist_without_training_images_splits_the_test_split(offline, tmp_path):
    directory = tmp_path / "kmnist"
    directory.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(REAL_DIR / "kmnist" / name, directory / name)
    with pytest.warns(UserWarning, match="not comparable with published kmnist numbers") as said:
        data = load_dataset("kmnist", tmp_path)  # said where it is used, not only recorded
    assert str(directory) in str(said[0].message)  # the warning says where it looked;
    assert str(tmp_path) not in data.notes[0]  # the recorded note is the same on every machine
    full_test = formats.read_idx_labels(directory / "t10k-labels-idx1-ubyte.gz")
    assert data.x_train.shape == (8000, 784) and data.x_test.shape == (2000, 784)
    np.testing.assert_array_equal(np.concatenate([data.y_train, data.y_test]), full_test)
    assert len(data.notes) == 1 and "first 8000 / last 2000" in data.notes[0]
    assert any(url.endswith("train-images-idx3-ubyte.gz") for url in offline)  # a download was tried first
