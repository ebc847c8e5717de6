"""Parsers for the on-disk dataset formats: gzip-compressed IDX and ESL "zip" text.

Every problem with a file (bad gzip stream, wrong magic number, payload size not matching
the header's dimensions, malformed text line) raises :class:`DataError` whose message
starts with the file's path and says what is wrong.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from neurosim.errors import DataError

#: IDX magic numbers: 0x00000803 (unsigned bytes, 3 dims) and 0x00000801 (unsigned bytes, 1 dim).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

#: ESL zip lines: the digit label, then 16x16 grey values in [-1, 1], row-major.
ESL_SIDE = 16


@contextmanager
def gzip_errors(path: Path) -> Iterator[None]:
    """Turn errors raised while decompressing ``path`` into :class:`DataError` naming it."""
    try:
        yield
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: not a valid gzip file ({error})") from None


def read_gzip(path: Path) -> bytes:
    """The decompressed content of gzip file ``path``."""
    with gzip_errors(path), gzip.open(path, "rb") as stream:
        return stream.read()


def parse_idx(data: bytes, source: Path | str, magic: int) -> np.ndarray:
    """The uint8 array stored in IDX bytes ``data`` (decompressed), whose magic must be ``magic``.

    The header is the big-endian int32 magic (``0x0000 08 <ndim>``) followed by ``ndim``
    big-endian int32 dimensions; the payload must hold exactly their product in bytes.
    """
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{source}: wrong IDX magic number {found} (expected {magic})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: IDX header truncated ({len(data)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{source}: IDX size {len(data)} bytes does not match dims {'x'.join(map(str, dims))} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_images(path: Path) -> np.ndarray:
    """The ``(N, rows, cols)`` uint8 images of gzip IDX file ``path``."""
    return parse_idx(read_gzip(path), path, IDX_IMAGES_MAGIC)


def read_idx_labels(path: Path) -> np.ndarray:
    """The ``(N,)`` uint8 labels of gzip IDX file ``path``."""
    return parse_idx(read_gzip(path), path, IDX_LABELS_MAGIC)


def parse_esl_zip(text: str, source: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 16, 16)`` float64 in [-1, 1] and int64 labels from ESL zip text.

    Each non-blank line is a label (an integer, possibly written ``6.0000``) followed by 256
    grey values in [-1, 1]. Line numbers in errors count from 1.
    """
    n_fields = 1 + ESL_SIDE * ESL_SIDE
    rows, numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise DataError(f"{source}: line {number} has {len(fields)} fields (expected {n_fields})")
        rows.append(fields)
        numbers.append(number)
    if not rows:
        raise DataError(f"{source}: no data lines")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        for number, fields in zip(numbers, rows):
            try:
                np.array(fields, dtype=np.float64)
            except ValueError as error:
                raise DataError(f"{source}: line {number}: {error}") from None
        raise
    labels, pixels = table[:, 0], table[:, 1:]
    bad_label = np.flatnonzero((labels != np.round(labels)) | (labels < 0))
    if bad_label.size:
        row = bad_label[0]
        raise DataError(f"{source}: line {numbers[row]} has label {labels[row]}, not a class index")
    bad_value = np.flatnonzero(~np.all((pixels >= -1.0) & (pixels <= 1.0), axis=1))
    if bad_value.size:
        raise DataError(f"{source}: line {numbers[bad_value[0]]} has a grey value outside [-1, 1] (or NaN)")
    return pixels.reshape(-1, ESL_SIDE, ESL_SIDE), labels.astype(np.int64)


def read_esl_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of gzip ESL zip file ``path`` (see :func:`parse_esl_zip`)."""
    data = read_gzip(path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not ASCII text ({error})") from None
    return parse_esl_zip(text, path)
