"""Out-of-distribution transforms of 28x28 images: translation, rotation, scaling.

Each function takes images of shape ``(N, 784)``, ``(N, 28, 28)`` or ``(28, 28)``, with
values in [0, 1], and returns float32 images of the same shape, clipped to [0, 1].
Geometry follows the displayed image (row 0 at the top): ``dx`` moves right, ``dy`` moves
down, positive ``degrees`` turn counter-clockwise, all about the frame's centre (13.5, 13.5)
in pixel-index coordinates. Interpolation is bilinear (order 1); pixels brought in from
outside the frame are 0. Each call runs one vectorised ``scipy.ndimage`` operation on the
whole stack.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIDE = 28
_CENTRE = (SIDE - 1) / 2


def _as_stack(images: np.ndarray) -> np.ndarray:
    """``images`` as a float64 ``(N, 28, 28)`` stack (a new array)."""
    images = np.asarray(images)
    if images.shape[-1:] != (SIDE * SIDE,) and images.shape[-2:] != (SIDE, SIDE):
        raise ValueError(f"expected images of shape (N, 784), (N, 28, 28) or (28, 28), got {images.shape}")
    return images.astype(np.float64).reshape(-1, SIDE, SIDE)


def _finish(stack: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.clip(stack, 0.0, 1.0).astype(np.float32).reshape(np.shape(like))


def translate(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Images moved ``dx`` pixels right and ``dy`` pixels down (sub-pixel amounts allowed)."""
    shifted = ndimage.shift(_as_stack(images), (0.0, dy, dx), order=1, mode="constant", cval=0.0)
    return _finish(shifted, images)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Images turned ``degrees`` counter-clockwise about the frame's centre."""
    turned = ndimage.rotate(_as_stack(images), degrees, axes=(2, 1), reshape=False, order=1, mode="constant")
    return _finish(turned, images)


def scale(images: np.ndarray, factor: float) -> np.ndarray:
    """Images magnified by ``factor`` (> 0; < 1 shrinks) about the frame's centre, kept 28x28."""
    if not factor > 0:
        raise ValueError(f"scale factor must be > 0, got {factor}")
    inverse = 1.0 / factor
    offset = _CENTRE * (1.0 - inverse)
    scaled = ndimage.affine_transform(
        _as_stack(images),
        (1.0, inverse, inverse),
        offset=(0.0, offset, offset),
        order=1,
        mode="constant",
    )
    return _finish(scaled, images)
