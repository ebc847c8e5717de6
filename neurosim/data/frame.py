"""Put small digit images (USPS 16x16, scikit-learn digits 8x8) into the MNIST frame.

MNIST digits were size-normalised into a 20x20 box and placed in a 28x28 field with their
intensity centre of mass at the field's centre. Measured on the MNIST test images, the
centre of mass (row, column), in pixel-index coordinates, averages (13.99, 14.01) and
always lies within 0.5 px of (14, 14): MNIST translated by whole pixels towards (14, 14).
Here images are resized to 20x20 (bilinear), padded to 28x28 and shifted by a sub-pixel
amount so that their centre of mass is (14, 14).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FRAME_SIDE = 28
BOX_SIDE = 20
#: Centre of mass (row, column) of MNIST digits, in pixel-index coordinates.
MNIST_CENTRE = (14.0, 14.0)


def centres_of_mass(images: np.ndarray) -> np.ndarray:
    """``(N, 2)`` intensity centres of mass (row, column) of ``(N, H, W)`` images; NaN if blank."""
    images = np.asarray(images, dtype=np.float64)
    mass = images.sum(axis=(1, 2))
    rows = np.arange(images.shape[1])
    cols = np.arange(images.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        row = images.sum(axis=2) @ rows / mass
        col = images.sum(axis=1) @ cols / mass
    return np.stack([row, col], axis=1)


def to_mnist_frame(images: np.ndarray) -> np.ndarray:
    """``(N, 28, 28)`` float32 in [0, 1] from ``(N, H, W)`` images with values in [0, 1].

    Each image is resized to 20x20 (``scipy.ndimage.zoom``, order 1), centred in a 28x28
    field, then shifted (order 1) to put its centre of mass at :data:`MNIST_CENTRE`.
    Blank images stay blank.
    """
    images = np.asarray(images, dtype=np.float64)
    n, height, width = images.shape
    boxed = ndimage.zoom(images, (1, BOX_SIDE / height, BOX_SIDE / width), order=1)
    frame = np.zeros((n, FRAME_SIDE, FRAME_SIDE))
    margin = (FRAME_SIDE - BOX_SIDE) // 2
    frame[:, margin : margin + BOX_SIDE, margin : margin + BOX_SIDE] = boxed
    shifts = np.asarray(MNIST_CENTRE) - centres_of_mass(frame)
    for image, shift in zip(frame, shifts):
        if np.all(np.isfinite(shift)):
            image[...] = ndimage.shift(image, shift, order=1, mode="constant", cval=0.0)
    return np.clip(frame, 0.0, 1.0).astype(np.float32)
