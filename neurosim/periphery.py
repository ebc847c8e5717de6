"""The periphery read model of a crossbar array: DAC, array read noise, ADC (DESIGN §2).

This module is the specification (plain NumPy); :mod:`neurosim.backends.numba_periphery`
computes the same numbers operation for operation. One *read* of an array holding ``w``
(``n_out x n_in``, array units) with a batch of inputs ``x`` (``batch x n_in``) is made by
the array's **tiles** (DESIGN §1; :class:`neurosim.config.TileConfig`): the read's inputs
are cut into consecutive spans of ``tile_in`` (the last one shorter), its outputs into spans
of ``tile_out``, and every tile ``(r, c)`` reads its own block of cells with its own DAC,
noise and ADC, as DNN+NeuroSim's subarrays and aihwkit's split tiles do. Per row tile ``r``
(inputs ``J_r``), per sample ``b`` and output ``i``, in this order:

1. **DAC.** ``managed`` bound: the sample is divided by ``s_b = max_{j in J_r} |x_bj| /
   dac_range`` (aihwkit's "noise management", AbsMax, over the inputs this tile receives),
   so its abs-max lands on the DAC's full scale; ``s_b = 1`` for an all-zero sample.
   ``fixed``: ``s_b = 1`` (no division). Then, if ``dac_bits`` is set,
   ``x_q = quantize(x / s_b, dac_bits, dac_range)`` (clip, then round to the grid);
   ``dac_bits = None`` is an ideal DAC (no clipping, no rounding).
2. **Ideal partial sum** ``y = x_q[:, J_r] @ w[:, J_r].T``.
3. **Weight read noise** ``+ w_noise * sqrt((x_q * x_q)[:, J_r] @ (w * w)[:, J_r].T) * xi``.
4. **Output noise** ``+ out_noise * adc_range * zeta`` (every tile's converter adds its own).
5. **ADC.** If ``adc_bits`` is set, ``y_bi = quantize(y_bi, adc_bits, R_bc)`` for ``i`` in
   column tile ``c`` (outputs ``I_c``), with ``R_bc = adc_range`` (``fixed`` and
   ``iterative``) or ``R_bc = max_{i in I_c} |y_bi|``, the largest of the sample's outputs
   this tile digitizes, after the noise (``managed``; ``R_bc = adc_range`` if that maximum
   is 0): each sample is its own read, so a managed range never depends on the other
   samples of a batch (or on how an evaluation splits its inputs into chunks). ``adc_bits =
   None`` is an ideal ADC (no clipping, no rounding).
6. **Undo the DAC scaling**: ``y_bi * s_b`` (``managed`` DAC only).
7. **Merge the partial sums** digitally: ``y = y_0 + y_1 + ...`` (in tile order).

**Iterative bound management** (``adc_bound: iterative``, aihwkit's
``BoundManagementType.ITERATIVE``). Steps 1-5 are *round* ``k = 0``. Where a sample's
column tile saturates (any of its outputs ``|y_bi| > adc_range`` before the ADC, either
sign), that tile reads the sample again in round ``k + 1`` with its inputs halved once
more: round ``k`` reads ``x_b / (s_b 2^k)`` (step 1's scaling, then the reduction
``rho_k = 2^k``; exact in floating point), adds fresh noise, converts with the fixed range,
and the outputs are multiplied back by ``rho_k`` before step 6. A tile keeps the first round
in which it does not saturate, or the last round allowed: rounds stop after the one whose
``rho_k`` exceeds ``rho_max = min(bm_max_factor, bm_max_resolution * levels_DAC)``
(``levels_DAC = 2**(dac_bits-1) - 1``; ``bm_max_factor`` alone with an ideal DAC), whose
outputs are clipped. aihwkit's defaults (max_bm_factor 1000, max_bm_res 0.25, 7-bit DAC)
give ``rho_max = 15.75``: at most 5 reads, the last at ``rho = 16``. Where aihwkit differs:
it tests for saturation after rounding the output to its ADC grid (here before: the two
differ only for an output within half an ADC step beyond the range) and it manages bounds
on forward reads only, while here every read through a periphery configured so does (BP's
transposed reads of the forward arrays included). This specification computes every round
for the whole batch and keeps the rows it needs (a backend may compute only the samples read
again where that gives the same numbers: Numba's read tiles do); the re-reads a chip makes
are those of the tiles still saturated, and the caller's ``rereads`` counts them: per sample, row tile
``r`` and column tile ``c`` read again, the tile's ``|J_r| |I_c|`` cells, ``|J_r|`` DAC
and ``|I_c|`` ADC conversions (:data:`REREAD_COUNTERS`; the ledger books them as reads).
The saturation test is a threshold on the read's product, compared in the read's dtype on
every backend: products that round differently (NumPy's OpenBLAS, Numba's products,
torch's MKL, a GPU's; float32 and float64 alike) put a tile whose largest output lies
within their last bits of ``adc_range`` on either side of it, so re-read counts agree
between backends exactly given the same product, and otherwise as far as the products
(and, over a run, the weights they update) agree.

A fixed-range ADC therefore clips and rounds each tile's partial sum, not the whole column
sum: with ``R`` row tiles an output carries ``R`` rounding errors and ``R`` output-noise
draws, and the ledger charges the ``R`` conversions (:func:`neurosim.ledger.array_read_counts`).
A forward read has ``tile_in = rows``, ``tile_out = cols`` of a tile; a transposed read
(BP's ``d @ w``) drives the physical columns, so ``tile_in = cols``, ``tile_out = rows``.
``tiles=None`` is one tile holding the whole array (so is any array that fits one tile:
steps 1-6 once, nothing to merge).

The result is in array units, before any digital scaling: the caller multiplies by the
layer's ``alpha`` and adds the bias. With the default :class:`PeripheryConfig` (ideal
converters, no noise) a read is exactly ``x @ w.T``.

**Random numbers.** ``xi`` and ``zeta`` are standard normals of the counter-based stream
``key_noise`` (:mod:`neurosim.rng`): in row tile ``r`` of ``R`` and round ``k`` (``0``
without iterative bound management), with ``o = 2 (k R + r) batch n_out``, ``xi[b, i]`` is
draw ``o + b * n_out + i`` and ``zeta[b, i]`` is draw ``o + batch * n_out + b * n_out + i``.
Noise is "redrawn on every read"
because every read gets its own key: the caller must derive a fresh key per read (e.g.
from (seed, step, layer, purpose)); the same key reproduces the same read exactly.

**Quantization** (:func:`quantize`) is a signed uniform grid with ``levels = 2**(bits-1) - 1``
steps per side (``2 * levels + 1`` values, zero included, symmetric; aihwkit's
``inp_res = 1/(2**7 - 2)`` on the full range ``2 * inp_bound`` is ``dac_bits = 7``):
``step = bound / levels``, ``k = rint(clip(v, -bound, bound) / step)``,
``q = bound * (k / levels)`` (where ``step`` underflows to 0, as a managed range of
subnormal outputs does, the grid is finer than the dtype: ``q = clip(v, -bound, bound)``).
Two choices, both made so that the grid is exact:

* ``rint`` (IEEE round-half-to-even) rather than ``floor(v / step + 0.5)``: ``rint`` is one
  correctly rounded operation, symmetric (``q(-v) = -q(v)``, as a signed converter must be),
  unbiased on ties, and what ``torch.round`` does; ``floor(u + 0.5)`` rounds half up
  (``q(-0.5 step) = 0`` but ``q(0.5 step) = step``) and mis-rounds
  ``u = 0.49999999999999994`` to 1 because ``u + 0.5`` rounds up to 1.0 before the floor.
  NumPy's ``np.rint`` and Numba's are the same machine instruction.
* ``bound * (k / levels)`` rather than ``k * step``: the end points are exactly
  ``+-bound`` (``k / levels = +-1`` exactly), whereas ``levels * (bound / levels)`` can
  exceed ``bound`` by one ulp; every other value is within one ulp of ``k * step``.

All arithmetic is in the common floating dtype of ``w`` and ``x`` (float32 stays float32);
config scalars are cast to it first, the float64 normals are cast to it when drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from neurosim import rng
from neurosim.errors import ConfigError
from neurosim.schema import spec

BOUND_MODES = ("fixed", "managed")
ADC_BOUND_MODES = BOUND_MODES + ("iterative",)
MAX_BITS = 24  # 2**23 - 1 levels per side: exact in float32
# What iterative bound management's re-reads cost, in this order (``rereads`` arrays):
# cells read (one analog MAC each), DAC conversions, ADC conversions.
REREAD_COUNTERS = ("cells_read", "dac_conversions", "adc_conversions")


@dataclass(frozen=True)
class PeripheryConfig:
    """DAC, read noise and ADC of one array's reads (see :mod:`neurosim.periphery`).

    ``y_b = s_b * ADC( DAC(x_b / s_b) @ w.T + w_noise sqrt((DAC(x_b / s_b)^2) @ (w^2).T) xi
    + out_noise * adc_range * zeta )``, with ``s_b = max|x_b| / dac_range`` for a managed DAC
    (else 1), ``xi, zeta ~ N(0, 1)`` redrawn on every read. The default is ideal: ``y = x @ w.T``.

    **Weight read noise.** Physically every read sees ``w_ij + w_noise |w_ij| xi_ij`` with a
    fresh ``xi_ij`` per cell and per read. For one sample ``x`` that gives output ``i`` the
    extra term ``w_noise sum_j |w_ij| x_j xi_ij``: a sum of independent Gaussians, i.e.
    exactly ``N(0, w_noise^2 sum_j w_ij^2 x_j^2)``. Outputs ``i != i'`` sum over disjoint
    cells (row ``i`` vs row ``i'``), so their noises are independent: drawing one normal per
    output, ``w_noise sqrt((w*w) @ (x*x))_i xi_i``, has exactly the joint distribution of the
    per-cell model for one sample's read, at the cost of one extra matrix product instead
    of ``n_out * n_in`` normals per sample. What it does not capture: (a) samples of a batch
    are separate reads (independent noise); a model where one cell realization is shared by
    the whole batch would correlate sample ``b`` and ``b'`` at output ``i`` (covariance
    ``w_noise^2 sum_j w_ij^2 x_bj x_b'j``), and that correlation is absent here; (b) the
    noisy weights themselves are never formed, so they cannot be reused by another read
    (e.g. a transposed read of the same realization), and temporally correlated (1/f)
    noise is not modelled; (c) it relies on the per-cell noise being Gaussian.
    """

    dac_bits: int | None = spec(
        None, ge=2, le=MAX_BITS,
        doc="DAC resolution in bits of a signed converter: 2**(bits-1) - 1 steps per side "
            "(7 bits = 63 steps per side, aihwkit's default inp_res); null = ideal DAC "
            "(no clipping, no rounding). A 1-bit bit-serial DAC is not this parameter (it "
            "needs one read per input bit plane)")
    dac_range: float = spec(
        1.0, gt=0.0,
        doc="DAC full scale (input units): with dac_bits set, inputs are clipped to "
            "[-dac_range, dac_range] and rounded to steps of dac_range / (2**(dac_bits-1) - 1); "
            "with a managed DAC, each sample's abs-max is scaled onto it")
    dac_bound: str = spec(
        "fixed", choices=BOUND_MODES,
        doc="fixed: inputs enter the DAC as they are; managed: per-sample scaling (aihwkit "
            "noise management, AbsMax): x_b is divided by s_b = max_j |x_bj| / dac_range "
            "before the DAC and the output multiplied by s_b after the ADC (s_b = 1 for a "
            "zero sample). Applies even with an ideal DAC, because it sets the signal level "
            "relative to the output noise and the ADC range")
    adc_bits: int | None = spec(
        None, ge=2, le=MAX_BITS,
        doc="ADC resolution in bits of a signed converter: 2**(bits-1) - 1 steps per side; "
            "null = ideal ADC (no clipping, no rounding)")
    adc_range: float = spec(
        10.0, gt=0.0,
        doc="ADC full scale in array output units (w * x): with adc_bits set and a fixed "
            "bound, outputs are clipped to [-adc_range, adc_range]; also the unit of out_noise")
    adc_bound: str = spec(
        "fixed", choices=ADC_BOUND_MODES,
        doc="fixed: the ADC range is adc_range; managed: each sample's range is its own max "
            "|y| after the noise (an ideal auto-ranging ADC per read: nothing saturates); "
            "iterative: aihwkit's iterative bound management: the range is adc_range, and a "
            "sample whose outputs in a tile saturate is read again by that tile with its "
            "inputs halved, until nothing saturates or the reduction passes bm_max_factor or "
            "bm_max_resolution (needs adc_bits; the re-reads are charged in the ledger)")
    bm_max_factor: int = spec(
        1000, ge=1,
        doc="iterative bound management: rounds stop after the one whose input reduction "
            "2**k exceeds this (aihwkit's max_bm_factor)")
    bm_max_resolution: float = spec(
        0.25, gt=0.0, le=1.0,
        doc="iterative bound management: rounds also stop after the one whose reduction "
            "exceeds bm_max_resolution * (2**(dac_bits-1) - 1), i.e. once a sample's "
            "largest input spans fewer than 1 / bm_max_resolution DAC steps (aihwkit's "
            "max_bm_res; no limit with an ideal DAC)")
    out_noise: float = spec(
        0.0, ge=0.0,
        doc="additive Gaussian output noise, std out_noise * adc_range (relative to the ADC "
            "range), redrawn on every read. NOTE aihwkit's out_noise (default 0.06) is an "
            "absolute std in its output units (inputs in [-1, 1], out_bound 12), not "
            "relative; aihwkit's default corresponds to out_noise = 0.06 / adc_range here")
    w_noise: float = spec(
        0.0, ge=0.0,
        doc="weight-proportional read noise: every read uses w_ij + w_noise * |w_ij| * xi_ij; "
            "simulated exactly in distribution as w_noise * sqrt((w*w) @ (x*x)) * xi_i per "
            "output (see the class docstring)")

    def check(self, source: str, path: str) -> None:
        if self.adc_bound == "iterative" and self.adc_bits is None:
            raise ConfigError(source, f"{path}.adc_bound", self.adc_bound,
                              "iterative bound management re-reads what saturates the ADC: "
                              "set adc_bits (an ideal ADC never saturates)")
        unused = {name: "applies to adc_bound: iterative only"
                  for name in ("bm_max_factor", "bm_max_resolution") if not self.iterative}
        if self.dac_bits is None and self.dac_bound == "fixed":
            unused["dac_range"] = "has no effect with an ideal DAC (dac_bits: null) and a " \
                                  "fixed dac_bound: set dac_bits or dac_bound: managed"
        if (self.adc_bits is None or self.adc_bound == "managed") and self.out_noise == 0.0:
            unused["adc_range"] = "has no effect here: it is the range of an ADC with " \
                                  "adc_bits and a fixed or iterative adc_bound, and the unit " \
                                  "of out_noise"
        for name, reason in unused.items():
            if getattr(self, name) != self.__dataclass_fields__[name].default:
                raise ConfigError(source, f"{path}.{name}", getattr(self, name), reason)

    @property
    def iterative(self) -> bool:
        """Whether saturated tiles are read again (``adc_bound: iterative``)."""
        return self.adc_bound == "iterative"

    @property
    def reduction_limit(self) -> float:
        """``rho_max``: iterative rounds stop after the one whose reduction exceeds it."""
        if self.dac_bits is None:
            return float(self.bm_max_factor)
        return min(float(self.bm_max_factor),
                   self.bm_max_resolution * quantization_levels(self.dac_bits))

    @property
    def rounds(self) -> int:
        """The most reads one tile makes of one sample: 1, or with iterative bound
        management 1 + the first ``k`` with ``2**k > rho_max``."""
        if not self.iterative:
            return 1
        k = 0
        while 2 ** k <= self.reduction_limit:
            k += 1
        return k + 1

    @property
    def is_ideal(self) -> bool:
        """Whether a read is exactly ``x @ w.T``."""
        return (self.dac_bits is None and self.adc_bits is None and self.dac_bound == "fixed"
                and self.out_noise == 0.0 and self.w_noise == 0.0)


def quantization_levels(bits: int) -> int:
    """Steps per side of a signed ``bits``-bit converter: ``2**(bits - 1) - 1``."""
    if not 2 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 2..{MAX_BITS}, got {bits}")
    return 2 ** (bits - 1) - 1


def quantize(v: np.ndarray, bits: int | None, bound) -> np.ndarray:
    """``v`` clipped to ``[-bound, bound]`` and rounded to the nearest of ``bound * k / levels``,
    ``k = -levels .. levels`` (ties to even ``k``), in ``v``'s floating dtype; ``bound`` a
    number or an array broadcasting against ``v`` (a range per sample). Where
    ``bound / levels`` underflows to 0 the grid is finer than the dtype and ``v`` clipped
    is returned.
    ``bits=None`` returns ``v`` unchanged (an ideal converter)."""
    if bits is None:
        return v
    t = v.dtype.type
    r = np.asarray(bound, dtype=v.dtype)
    levels = t(quantization_levels(bits))
    clipped = np.clip(v, -r, r)
    step = r / levels
    finer = step == 0  # the docstring's underflow: each value is its own grid point
    # Clamp k too: near 2**24 levels, r / step can round one grid point past the end.
    k = np.clip(np.rint(clipped / np.where(finer, t(1), step)), -levels, levels)
    return np.where(finer, clipped, r * (k / levels))


def common_dtype(w: np.ndarray, x: np.ndarray) -> np.dtype:
    """The floating dtype a read computes in: float32 only if both operands are float32."""
    dtype = np.result_type(np.asarray(w).dtype, np.asarray(x).dtype, np.float32)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"reads compute in float32 or float64, not {dtype}")
    return dtype


def check_shapes(w: np.ndarray, x: np.ndarray, transposed: bool) -> tuple[int, int]:
    """``(n_in, n_out)`` of the read, after checking that the shapes fit."""
    if w.ndim != 2 or x.ndim != 2:
        raise ValueError(f"w and x must be 2-d, got shapes {w.shape} and {x.shape}")
    n_out, n_in = (w.shape[1], w.shape[0]) if transposed else w.shape
    if x.shape[1] != n_in:
        raise ValueError(f"inputs have {x.shape[1]} features, the read needs {n_in} "
                         f"(w {w.shape}, {'transposed' if transposed else 'forward'})")
    return n_in, n_out


Matmul = Callable[[np.ndarray, np.ndarray], np.ndarray]


def tile_sizes(n_in: int, n_out: int, tiles, transposed: bool) -> tuple[int, int]:
    """``(tile_in, tile_out)``: how many of a read's inputs and outputs one tile holds.
    ``tiles`` is ``(rows, cols)`` of a tile of the physical array (rows carry a forward
    read's inputs; a transposed read drives the columns), or ``None``: one tile."""
    if tiles is None:
        return n_in, n_out
    rows, cols = tiles
    return (cols, rows) if transposed else (rows, cols)


def spans(n: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of the consecutive spans of ``size`` that cut ``range(n)``."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def read(w: np.ndarray, x: np.ndarray, config: PeripheryConfig, key_noise: int, *,
         tiles: tuple[int, int] | None = None, matmul: Matmul = np.matmul,
         rereads: np.ndarray | None = None) -> np.ndarray:
    """One read ``y ~ x @ w.T`` through the periphery of an array cut into ``tiles``
    (``(rows, cols)`` of a tile; ``None``: one tile), by the module docstring's model, shape
    ``(batch, n_out)``, in array units.

    ``matmul`` computes the matrix products (``x_q @ w.T`` and, with weight noise,
    ``x_q**2 @ (w**2).T``, per row tile). Tests pass the product the Numba kernel uses:
    NumPy and SciPy (whose BLAS Numba calls) ship different OpenBLAS builds whose float32
    GEMMs round differently, and everything else is bit-identical between the two
    implementations. ``rereads``: an int64 array over :data:`REREAD_COUNTERS` to which the
    re-reads of iterative bound management are added (``None``: not counted).
    """
    return _read(w, x, config, key_noise, False, tiles, matmul, rereads)


def transposed_read(w: np.ndarray, d: np.ndarray, config: PeripheryConfig, key_noise: int, *,
                    tiles: tuple[int, int] | None = None, matmul: Matmul = np.matmul,
                    rereads: np.ndarray | None = None) -> np.ndarray:
    """A read of ``w.T`` (``d @ w``, shape ``(batch, n_in)``): BP's backward pass through the
    forward array, same periphery model, the same physical tiles driven from the columns.
    Counting it as weight transport is the caller's job (DESIGN §2)."""
    return _read(w, d, config, key_noise, True, tiles, matmul, rereads)


def _read(w, x, config: PeripheryConfig, key: int, transposed: bool, tiles, matmul: Matmul,
          rereads):
    dtype = common_dtype(w, x)
    w = np.asarray(w, dtype=dtype)
    x = np.asarray(x, dtype=dtype)
    n_in, n_out = check_shapes(w, x, transposed)
    tile_in, tile_out = tile_sizes(n_in, n_out, tiles, transposed)
    row_tiles = spans(n_in, tile_in)
    block = 2 * len(row_tiles) * x.shape[0] * n_out  # the normals of one round
    drawn: dict[int, np.ndarray] = {}

    def normals(k: int) -> np.ndarray | None:
        """Round ``k``'s normals (draws ``k block .. (k + 1) block - 1``), ``None`` without
        noise."""
        if config.w_noise == 0 and config.out_noise == 0:
            return None
        if k not in drawn:
            drawn[k] = (rng.normal(key, block) if k == 0 else
                        rng.normal_at(key, np.arange(k * block, (k + 1) * block))).astype(dtype)
        return drawn[k]

    y = None
    for r, (lo, hi) in enumerate(row_tiles):
        # the tile's cells as a contiguous block (the same operands the fast kernels use)
        w_tile = np.ascontiguousarray(w[lo:hi] if transposed else w[:, lo:hi])
        part = _read_tile(w_tile, np.ascontiguousarray(x[:, lo:hi]), config, transposed,
                          spans(n_out, tile_out), normals, r, matmul, rereads)
        y = part if y is None else y + part  # 7. partial sums merged digitally
    return y


def _read_tile(w, x, config: PeripheryConfig, transposed: bool, out_tiles, normals, r: int,
               matmul: Matmul, rereads):
    """Steps 1-6 of the module docstring for row tile ``r``, with iterative bound
    management's rounds: ``w`` its cells, ``x`` the inputs it receives, ``out_tiles`` the
    spans of its column tiles, ``normals(k)`` round ``k``'s normals (``None`` without
    noise)."""
    t = x.dtype.type
    # 1. per-sample scaling of the DAC (noise management)
    managed_dac = config.dac_bound == "managed"
    if managed_dac:
        abs_max = np.max(np.abs(x), axis=1, initial=t(0))
        scale = np.where(abs_max > 0, abs_max / t(config.dac_range), t(1))
        x = x / scale[:, None]
    y = _read_round(w, x, config, transposed, normals(0), r, matmul)
    if config.iterative:  # 5. with re-reads of what saturates
        y = _manage_bounds(y, w, x, config, transposed, out_tiles, normals, r, matmul,
                           rereads)
    elif config.adc_bits is not None:  # 5.
        y = _convert(y, config, out_tiles)

    # 6. undo the DAC scaling
    if managed_dac:
        y = y * scale[:, None]
    return y


def _read_round(w, x, config: PeripheryConfig, transposed: bool, z, r: int, matmul: Matmul):
    """Steps 1-4 of one round for row tile ``r``: the DAC (``x`` already scaled), the
    array's partial sums and the read noise, before the ADC; ``z`` the round's normals."""
    t = x.dtype.type
    batch = x.shape[0]
    n_out = w.shape[1] if transposed else w.shape[0]
    w_read = w if transposed else w.T  # (tile inputs, n_out): y = x @ w_read

    # 1. the DAC
    x_q = quantize(x, config.dac_bits, config.dac_range)

    # 2. the ideal partial sums in the array
    y = matmul(x_q, w_read)

    # 3-4. read noise: draws o + [0, batch*n_out) for xi, o + [batch*n_out, 2*batch*n_out)
    # for zeta, o = 2 r batch n_out within the round's normals
    if z is not None:
        o = 2 * r * batch * n_out
        xi = z[o:o + batch * n_out].reshape(batch, n_out)
        zeta = z[o + batch * n_out:o + 2 * batch * n_out].reshape(batch, n_out)
        if config.w_noise > 0:
            w2 = w * w
            variance = matmul(x_q * x_q, w2 if transposed else w2.T)
            y = y + (t(config.w_noise) * np.sqrt(variance)) * xi
        if config.out_noise > 0:
            y = y + (t(config.out_noise) * t(config.adc_range)) * zeta
    return y


def _convert(y, config: PeripheryConfig, out_tiles):
    """5. The ADC, one per column tile (:func:`quantize` with each range)."""
    t = y.dtype.type
    bound = t(config.adc_range)
    if config.adc_bound == "managed":  # each sample's own range in each column tile
        bound = np.empty_like(y)
        for lo, hi in out_tiles:
            largest = np.max(np.abs(y[:, lo:hi]), axis=1, initial=t(0), keepdims=True)
            bound[:, lo:hi] = np.where(largest > 0, largest, t(config.adc_range))
    return quantize(y, config.adc_bits, bound)


def _manage_bounds(y, w, x, config: PeripheryConfig, transposed: bool, out_tiles, normals,
                   r: int, matmul: Matmul, rereads):
    """Step 5 with iterative bound management, for row tile ``r`` (module docstring): ``y``
    round 0's outputs before the ADC, ``x`` the inputs after step 1's scaling. Returns, per
    sample and column tile, the converted outputs of the first round that does not saturate
    (or of the last round), multiplied by that round's reduction; adds the re-reads to
    ``rereads``."""
    t = y.dtype.type
    limit = t(config.adc_range)

    def saturated(v):  # (batch, column tiles): an output of the tile beyond the range
        return np.stack([np.any(np.abs(v[:, lo:hi]) > limit, axis=1) for lo, hi in out_tiles],
                        axis=1)

    pending = saturated(y)
    kept = _convert(y, config, out_tiles)
    k = 0
    while pending.any() and 2 ** k <= config.reduction_limit:
        k += 1
        reduction = t(2 ** k)
        y = _read_round(w, x / reduction, config, transposed, normals(k), r, matmul)
        converted = _convert(y, config, out_tiles) * reduction
        for c, (lo, hi) in enumerate(out_tiles):
            again = pending[:, c]
            kept[again, lo:hi] = converted[again, lo:hi]
            if rereads is not None:  # the tile reads these samples again
                rereads += int(again.sum()) * np.array([x.shape[1] * (hi - lo), x.shape[1],
                                                         hi - lo], dtype=np.int64)
        pending &= saturated(y)
    return kept
