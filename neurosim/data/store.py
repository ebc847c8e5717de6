"""Where dataset files live, whether they are intact, and how missing ones are downloaded.

Data directory, first that applies: the explicit ``data_dir`` argument, the environment
variable ``NEUROSIM_DATA``, then ``$XDG_CACHE_HOME/neurosim/data`` (or
``~/.cache/neurosim/data``). A dataset's files sit in ``<data dir>/<spec.dirname>/<filename>``,
e.g. ``<data dir>/fashion-mnist/train-images-idx3-ubyte.gz``.

Checking a file means hashing it (the decompressed content for ``sha256`` specs), which
costs about 0.3 s for MNIST's 47 MB of training images. Digests are therefore cached,
keyed by path, size and modification time: in memory for the life of the process, and in a
JSON sidecar ``.neurosim-checksums.json`` in the dataset's directory when that directory is
writable (the shared read-only copy only gets the in-memory cache).

A directory counts as writable only if the process may write it *and* its permission bits
allow some writing: a tree marked read-only (``r-xr-xr-x``) is never written, not even by
root, who may otherwise bypass permissions.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from neurosim.data import formats
from neurosim.data.registry import DatasetSpec, FileSpec, get_spec
from neurosim.errors import DataError
from neurosim.runio import new_temporary, temporary_names

ENV_VAR = "NEUROSIM_DATA"
DOWNLOAD_TIMEOUT_S = 30.0
SIDECAR_NAME = ".neurosim-checksums.json"
_CHUNK_BYTES = 1 << 20
# A download writes its temporary a chunk at a time; one older than this is abandoned (its
# process was killed) unless the network gives less than _CHUNK_BYTES an hour (~290 B/s).
ABANDONED_PART_S = 3600.0
#: How each checksum kind is described in reports.
_CHECKSUM_WHAT = {
    "sha256": "sha256 of the decompressed content",
    "gz_md5": "md5 of the .gz file",
    "gz_sha256": "sha256 of the .gz file",
}

#: In-process digest cache: (path, size in bytes, mtime in ns, checksum kind) -> hex digest.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


class MissingDataError(DataError):
    """A dataset file is absent and could not be downloaded."""


@dataclass(frozen=True)
class FileStatus:
    """The state of one dataset file: ``"ok"``, ``"missing"`` or ``"corrupt"`` (see ``detail``)."""

    path: Path
    state: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def describe(self) -> str:
        """One line for reports: ``corrupt  /path: expected ..., got ...``."""
        return f"{self.state:<8} {self.path}" + (f": {self.detail}" if self.detail else "")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir`` > ``$NEUROSIM_DATA`` > per-user cache directory."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "neurosim" / "data"


def file_path(spec: DatasetSpec, file: FileSpec, root: Path) -> Path:
    """Where ``file`` of dataset ``spec`` belongs under data directory ``root``."""
    return root / spec.dirname / file.filename


def compute_digest(path: Path, file: FileSpec) -> str:
    """Hex digest of ``path`` of the kind ``file`` specifies (uncached).

    ``sha256`` hashes the gzip-decompressed content; ``gz_md5`` and ``gz_sha256`` hash the
    bytes on disk. A damaged gzip stream or an unreadable file raises :class:`DataError`
    naming ``path``.
    """
    kind, _ = file.checksum
    digest = hashlib.md5() if kind == "gz_md5" else hashlib.sha256()
    with formats.gzip_errors(path), (gzip.open(path, "rb") if kind == "sha256" else open(path, "rb")) as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def writable(directory: Path) -> bool:
    """Whether ``directory`` exists, may be written, and is not marked read-only (see module doc)."""
    try:
        marked_writable = directory.stat().st_mode & 0o222
    except OSError:
        return False
    return bool(marked_writable) and os.access(directory, os.W_OK)


def _read_sidecar(directory: Path) -> dict:
    try:
        with open(directory / SIDECAR_NAME, encoding="utf-8") as stream:
            entries = json.load(stream)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_sidecar(directory: Path, entries: dict) -> None:
    """Replace the sidecar atomically; silently skipped where the directory is read-only."""
    if not writable(directory):
        return
    try:
        fd, tmp = new_temporary(directory, SIDECAR_NAME, ".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(entries, stream, indent=1, sort_keys=True)
        os.replace(tmp, directory / SIDECAR_NAME)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def cached_digest(path: Path, file: FileSpec, refresh: bool = False) -> str:
    """:func:`compute_digest`, reusing an earlier result while size and mtime are unchanged
    (``refresh``: computed again, and recorded, whatever was recorded: a change that keeps
    size and mtime, such as bit rot or a copy that keeps times, is seen only so)."""
    kind, _ = file.checksum
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, kind)
    if key in _DIGESTS and not refresh:
        return _DIGESTS[key]
    entries = _read_sidecar(path.parent)
    if refresh:  # a recorded digest that may be stale is dropped first, kept only if it holds
        _DIGESTS.pop(key, None)
        if entries.pop(path.name, None) is not None:
            _write_sidecar(path.parent, entries)
    entry = entries.get(path.name)
    if not refresh and isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns and kind in entry:
        digest = entry[kind]
    else:
        digest = compute_digest(path, file)
        entries[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, kind: digest}
        _write_sidecar(path.parent, entries)
    _DIGESTS[key] = digest
    return digest


def check_file(path: Path, file: FileSpec, *, cache: bool = True, rehash: bool = False) -> FileStatus:
    """Whether ``path`` exists and has the checksum ``file`` specifies.

    ``cache=False`` always rehashes and records nothing (used for partial downloads);
    ``rehash`` always rehashes and records the result (``neurosim data verify``).
    """
    if not path.is_file():
        return FileStatus(path, "missing")
    kind, expected = file.checksum
    if kind == "gz_sha256" and (size := path.stat().st_size) != file.size:
        short = " (truncated or incomplete download)" if size < file.size else ""
        return FileStatus(path, "corrupt", f"file is {size} bytes, expected {file.size}{short}")
    try:
        actual = cached_digest(path, file, refresh=rehash) if cache else compute_digest(path, file)
    except DataError as error:
        return FileStatus(path, "corrupt", str(error).removeprefix(f"{path}: "))
    if actual != expected:
        return FileStatus(path, "corrupt", f"{_CHECKSUM_WHAT[kind]} is {actual}, expected {expected}")
    return FileStatus(path, "ok")


def verify(name: str, data_dir: str | os.PathLike[str] | None = None, *,
           rehash: bool = False) -> tuple[FileStatus, ...]:
    """The status of every file of dataset ``name`` (empty for datasets without files);
    ``rehash``: every file hashed again, not taken from the digests recorded for its size
    and mtime."""
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    return tuple(check_file(file_path(spec, file, root), file, rehash=rehash) for file in spec.files)


def download(url: str, destination: Path) -> None:
    """Write the body of ``url`` to ``destination`` (timeout :data:`DOWNLOAD_TIMEOUT_S` seconds)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK_BYTES)


def _make_writable_dir(directory: Path) -> None:
    """Create ``directory`` if needed; :class:`PermissionError` if it or its nearest existing ancestor is read-only."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not writable(existing):
        raise PermissionError(f"{existing} is read-only")
    directory.mkdir(parents=True, exist_ok=True)


def _remove_abandoned_parts(target: Path) -> None:
    """Delete the temporaries of downloads of ``target`` that were killed midway (one is
    as large as the file: 170 MB for CIFAR-10): those unchanged for
    :data:`ABANDONED_PART_S`, so that a download in progress elsewhere keeps its own."""
    pattern = temporary_names(".part", target.name)
    for part in target.parent.glob(f".{target.name}.*.part"):
        try:
            if pattern.fullmatch(part.name) and time.time() - part.stat().st_mtime > ABANDONED_PART_S:
                part.unlink()
        except FileNotFoundError:  # removed meanwhile by another fetch
            pass


def fetch_file(spec: DatasetSpec, file: FileSpec, root: Path) -> Path:
    """Download ``file`` into place from its URLs, checking its checksum; return its path.

    The download goes to a temporary file beside the target and is moved into place with
    :func:`os.replace` only once its checksum matches. Raises :class:`MissingDataError`
    naming each failed URL and where to put the file by hand.
    """
    target = file_path(spec, file, root)
    by_hand = (
        f"download it by hand from {file.urls[0]} and save it as {target}, "
        f"or choose a data directory (--data-dir, else ${ENV_VAR}) that holds "
        f"{spec.dirname}/{file.filename}"
    )
    try:
        _make_writable_dir(target.parent)
        _remove_abandoned_parts(target)
        fd, tmp_name = new_temporary(target.parent, f".{file.filename}.", ".part")
    except OSError as error:
        raise MissingDataError(f"cannot write {target} ({error}); {by_hand}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    failures = []
    try:
        for url in file.urls:
            try:
                download(url, tmp)
                status = check_file(tmp, file, cache=False)
            except (OSError, http.client.HTTPException, ValueError) as error:
                failures.append(f"{url} failed: {error}")
                continue
            if status.ok:
                os.replace(tmp, target)
                return target
            failures.append(f"{url} gave a corrupt file: {status.detail}")
    finally:
        tmp.unlink(missing_ok=True)
    raise MissingDataError(f"could not download {spec.name} file {file.filename} ({'; '.join(failures)}); {by_hand}")


def fetch(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[FileStatus, ...]:
    """Download every missing or corrupt file of dataset ``name``; return the final statuses.

    Raises :class:`MissingDataError` (after trying every file) if any file could not be
    fetched; its message joins the per-file failures.
    """
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    errors = []
    for file in spec.files:
        path = file_path(spec, file, root)
        if not check_file(path, file).ok:
            try:
                fetch_file(spec, file, root)
            except MissingDataError as error:
                errors.append(str(error))
    if errors:
        raise MissingDataError(" | ".join(errors))
    return verify(name, root)


def require(spec: DatasetSpec, files: tuple[FileSpec, ...], root: Path, *,
            rehash: bool = False) -> tuple[Path, ...]:
    """Paths of ``files`` after making sure each is present and intact (``rehash``: hashed
    now, not taken from the digest recorded for the file's size and mtime).

    Missing files are fetched; if that fails, :class:`MissingDataError` names the expected
    path(s) and :data:`ENV_VAR`. A file present with the wrong checksum raises
    :class:`DataError` (it is never silently replaced).
    """
    paths = tuple(file_path(spec, file, root) for file in files)
    missing = []
    for path, file in zip(paths, files):
        status = check_file(path, file, rehash=rehash)
        if status.state == "corrupt":
            raise DataError(
                f"{path}: {status.detail}; delete it or run `neurosim data fetch {spec.name}` to replace it"
            )
        if status.state == "missing":
            missing.append((path, file))
    failures = []
    for path, file in missing:
        try:
            fetch_file(spec, file, root)
        except MissingDataError as error:
            failures.append(str(error))
    if failures:
        raise MissingDataError(f"{spec.name}: {len(failures)} file(s) missing: " + " | ".join(failures))
    return paths
