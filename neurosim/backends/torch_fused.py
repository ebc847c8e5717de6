"""A population step's optimizer and array update as Triton kernels (torch on CUDA).

The separate torch operations of :meth:`TorchBackend._optimize` and
:meth:`TorchBackend._ideal_update` pass over the population's ``M x n`` state about 34
times per step for Adam (each operation reads its operands and writes its result: 81 MB
per pass for 256 chips of a ``[784, 100, 10]`` network in float32) and launch about 20
kernels; the pulse counts of a pulsed update (:func:`torch_devices.pulse_counts`, its
rounding draws and the per-chip sums) make about 45 passes over 8-byte words per layer.
:class:`FusedStep` makes each in one pass and one launch:

* ``step``: per element it reads the gradient ``g``, the moments and the parameter, and
  writes them back (7 passes for Adam);
* ``pulse_counts``: per weight it reads the desired change and the stuck mask, and writes
  the count (int32) and the direction, adding each chip's pulses up and down with one
  atomic addition per block.

The arithmetic is the specification's, operation by operation and rounding by rounding,
so the kernels are bit-identical to the separate operations:

* Adam: ``m <- m b1 + g (1 - b1)``, ``v <- v b2 + (g (1 - b2)) g``,
  ``u = (m (-step_size)) / (sqrt(v) / sqrt(1 - b2^t) + eps)``;
  SGD with momentum ``mu``: ``m <- m mu + g``, ``u = m (-lr)``; plain SGD: ``u = g (-lr)``
  (:meth:`neurosim.backends.numpy_ref.NumpyBackend.optimizer_step`);
* the ideal update: a weight ``w <- clip(w + u (1 / alpha_l), w_min_l, w_max_l)``, a bias
  ``b <- b + u``; or, without it, ``u`` written out (the desired change that a pulsed
  update then programs);
* the pulse counts (:func:`neurosim.devices.pulse_counts`): ``x = |u (1 / alpha_l)| /
  dw_min`` in float64, ``min(floor(x), max_pulses) + [r < x - floor(x)]`` at most
  ``max_pulses``, ``r`` the weight's draw of the chip's rounding stream (SplitMix64 on
  uint64 words, as :mod:`neurosim.rng`); the pulse trains that follow stay
  :func:`torch_devices._pulse_trains` (few devices pulse in a step).

Every product and sum is rounded on its own: the kernels are compiled with
``enable_fp_fusion=False`` (no fused multiply-adds), divide with ``div_rn`` in float32
and ``/`` in float64, and take ``sqrt_rn`` (IEEE, correctly rounded; Triton's plain ``/``
and ``sqrt`` are approximations in float32 on a GPU, its float64 ``/`` is ``div.rn``).
``div_rn`` and ``sqrt_rn`` are float32 functions in Triton (its interpreter refuses
float64, and libdevice's float64 versions do not run there), so the kernels are for
float32 state, what GPU runs use; float64 runs keep the separate operations. Scalars that
must keep their precision (Adam's ``b1``, ``1 - b1`` ..., each chip's step size and
``1 / alpha_l`` in float32, ``dw_min`` in float64) are read from device tensors: a Python
float argument would reach a kernel as float32.

Triton is used where it is installed (the CUDA builds of torch ship it) and the state is
on a GPU. Its interpreter (``TRITON_INTERPRET=1``) runs the same kernels on CPU tensors
with NumPy operations, which is how the tests check them on a machine without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import SimpleNamespace

import numpy as np
import torch

from neurosim import rng
from neurosim.config import OptimizerConfig

BLOCK = 1024  # elements of one chip's row per program
SGD, MOMENTUM, ADAM = 0, 1, 2


def interpreted() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unavailable(device: torch.device, dtype: np.dtype) -> str | None:
    """Why the fused kernel cannot run on ``device`` in ``dtype`` (None: it can): it needs
    Triton and a CUDA device, or Triton's interpreter for CPU tensors, and float32 (the
    correctly rounded ``div_rn`` and ``sqrt_rn`` are float32 functions in Triton)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (it comes with torch's CUDA builds)"
    if dtype != np.float32:
        return f"the kernel computes in float32, not {dtype} (simulation.dtype)"
    if device.type == "cuda" or (device.type == "cpu" and interpreted()):
        return None
    return (f"Triton compiles for CUDA devices, not {device.type} "
            "(TRITON_INTERPRET=1 runs it on the CPU, slowly, for tests)")


def optimizer_code(cfg: OptimizerConfig) -> int:
    """The kernel's ``OPTIMIZER``: 0 plain SGD, 1 SGD with momentum, 2 Adam."""
    if cfg.name == "adam":
        return ADAM
    return MOMENTUM if cfg.momentum > 0 else SGD


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool) -> SimpleNamespace:
    """The Triton kernels ``step`` and ``pulse_counts``, defined on first use
    (``interpret``: compiled for the interpreter or for the GPU; Triton reads the setting
    when it decorates)."""
    import triton
    import triton.language as tl

    @triton.jit
    def step(params, m, v, grads, out, segments, inverse_alphas, bounds, constants,
             per_chip, per_chip_stride, n, n_layers,
             OPTIMIZER: tl.constexpr, UPDATE: tl.constexpr, BLOCK: tl.constexpr):
        chip = tl.program_id(1)
        cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = cols < n
        at = chip.to(tl.int64) * n + cols
        g = tl.load(grads + at, mask=inside)
        if OPTIMIZER == 2:  # Adam
            b1, c1 = tl.load(constants), tl.load(constants + 1)
            b2, c2 = tl.load(constants + 2), tl.load(constants + 3)
            eps = tl.load(constants + 4)
            minus_step = tl.load(per_chip + chip * per_chip_stride)
            inverse_sqrt_c2 = tl.load(per_chip + chip * per_chip_stride + 1)
            new_m = tl.load(m + at, mask=inside) * b1 + g * c1
            new_v = tl.load(v + at, mask=inside) * b2 + g * c2 * g
            tl.store(m + at, new_m, mask=inside)
            tl.store(v + at, new_v, mask=inside)
            u = tl.math.div_rn(new_m * minus_step,
                               tl.math.sqrt_rn(new_v) * inverse_sqrt_c2 + eps)
        elif OPTIMIZER == 1:  # SGD with momentum
            new_m = tl.load(m + at, mask=inside) * tl.load(constants) + g
            tl.store(m + at, new_m, mask=inside)
            u = new_m * tl.load(constants + 1)
        else:  # plain SGD
            u = g * tl.load(constants + 1)
        if UPDATE:
            segment = tl.load(segments + cols, mask=inside, other=0)  # 2 l (w) or 2 l + 1 (b)
            layer = segment // 2
            inverse_alpha = tl.load(inverse_alphas + chip * n_layers + layer, mask=inside)
            low = tl.load(bounds + 2 * layer, mask=inside)
            high = tl.load(bounds + 2 * layer + 1, mask=inside)
            w = tl.load(params + at, mask=inside)
            # clip(NaN) is NaN, as torch.clamp's and NumPy's
            clipped = tl.minimum(tl.maximum(w + u * inverse_alpha, low,
                                            propagate_nan=tl.PropagateNan.ALL),
                                 high, propagate_nan=tl.PropagateNan.ALL)
            tl.store(params + at, tl.where(segment % 2 == 0, clipped, w + u), mask=inside)
        else:
            tl.store(out + at, u, mask=inside)

    @triton.jit
    def pulse_counts(updates, row_length, w_offset, n, inverse_alphas, n_layers, layer,
                     limits, keys, free, counts, up, counted, max_pulses, golden, mul1, mul2,
                     BLOCK: tl.constexpr):
        chip = tl.program_id(1)
        cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = cols < n
        row = chip.to(tl.int64)
        dw = (tl.load(updates + row * row_length + w_offset + cols, mask=inside, other=0.0)
              * tl.load(inverse_alphas + chip * n_layers + layer))
        x = tl.abs(dw.to(tl.float64)) / tl.load(limits)  # dw_min; an IEEE division in f64
        x = tl.where(x != x, 0.0, x)  # NaN: no pulses
        whole = tl.floor(x)
        # draw ``cols`` of the chip's rounding stream: SplitMix64 on uint64 words
        z = (cols.to(tl.uint64) + 1) * golden + tl.load(
            keys + (chip * n_layers + layer) * 2).to(tl.uint64, bitcast=True)
        z = (z ^ (z >> 30)) * mul1
        z = (z ^ (z >> 27)) * mul2
        z = z ^ (z >> 31)
        draw = (z >> 11).to(tl.float64) * 1.1102230246251565e-16  # 2**-53, exact
        count = (tl.minimum(whole, tl.load(limits + 1)).to(tl.int32)
                 + (draw < x - whole).to(tl.int32))
        count = tl.minimum(count, max_pulses)
        count = tl.where(tl.load(free + row * n + cols, mask=inside, other=0) != 0, count, 0)
        rising = dw > 0
        tl.store(counts + row * n + cols, count, mask=inside)
        tl.store(up + row * n + cols, rising, mask=inside)
        at = counted + (chip * n_layers + layer) * 2
        tl.atomic_add(at, tl.sum(tl.where(rising, count, 0), axis=0).to(tl.int64))
        tl.atomic_add(at + 1, tl.sum(tl.where(rising, 0, count), axis=0).to(tl.int64))

    return SimpleNamespace(step=step, pulse_counts=pulse_counts)


@functools.lru_cache(maxsize=64)
def _constants(cfg: OptimizerConfig, dtype: np.dtype, device: torch.device) -> torch.Tensor:
    """The optimizer's step-independent scalars in ``dtype`` on ``device``: Adam's
    ``b1, 1 - b1, b2, 1 - b2, eps``; SGD's ``mu, -lr``."""
    t = dtype.type
    values = ([t(cfg.beta1), t(1 - cfg.beta1), t(cfg.beta2), t(1 - cfg.beta2), t(cfg.eps)]
              if cfg.name == "adam" else [t(cfg.momentum), -t(cfg.lr)])
    return torch.tensor(np.array(values, dtype=dtype), device=device)


class FusedStep:
    """The kernels for the chips of one layout (``chip``: a
    :class:`neurosim.chip.Chip`), with the per-parameter layer table and the layers' weight
    bounds kept on ``device``."""

    def __init__(self, chip, device: torch.device):
        n = int(chip.params.size)
        segments = np.empty(n, dtype=np.int32)
        for l in range(chip.n_layers):
            w_off, n_out, n_in, b_off = (int(value) for value in chip.layout[l])
            segments[w_off:w_off + n_out * n_in] = 2 * l
            segments[b_off:b_off + n_out] = 2 * l + 1
        self.device, self.dtype, self.n_layers = device, chip.dtype, chip.n_layers
        self.layout = chip.layout
        self.segments = torch.as_tensor(segments, device=device)
        self.bounds = torch.as_tensor(np.ascontiguousarray(chip.bounds_typed), device=device)
        self.kernels = _kernels(interpreted())

    def __call__(self, cfg: OptimizerConfig, params: torch.Tensor, m: torch.Tensor,
                 v: torch.Tensor, grads: torch.Tensor, out: torch.Tensor | None,
                 per_chip: torch.Tensor, inverse_alphas: torch.Tensor | None) -> None:
        """One optimizer step of every chip (row) of the ``A x n`` ``grads``: ``m`` and
        ``v`` updated in place (Adam; ``m`` only with momentum; neither for plain SGD:
        pass any tensor), and then either the ideal update of ``params`` in place
        (``inverse_alphas``: each chip's ``1 / alpha_l``, ``A x n_layers``) or, with
        ``inverse_alphas`` None, the desired change written into ``out``.
        ``per_chip``: Adam's ``-step_size`` and ``1 / sqrt(1 - b2^t)`` in the state's
        dtype, ``A x 2``, or ``1 x 2`` shared by every chip (unused by SGD)."""
        rows, n = grads.shape
        # an argument the kernel does not read is given as ``grads`` (never a null pointer)
        m, v, out = (grads if t is None or not t.numel() else t for t in (m, v, out))
        assert all(t.is_contiguous() for t in (params, m, v, grads, out))
        update = inverse_alphas is not None
        self.kernels.step[(-(-n // BLOCK), rows)](
            params, m, v, grads, out, self.segments,
            inverse_alphas if update else grads, self.bounds,
            _constants(cfg, self.dtype, self.device), per_chip,
            per_chip.shape[1] if per_chip.shape[0] > 1 else 0, n, self.n_layers,
            OPTIMIZER=optimizer_code(cfg), UPDATE=update, BLOCK=BLOCK,
            enable_fp_fusion=False)

    def pulse_counts(self, updates: torch.Tensor, l: int, inverse_alphas: torch.Tensor,
                     keys: torch.Tensor, free: torch.Tensor, dw_min: float, max_pulses: int,
                     counted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``l``'s pulses of every chip (row) of the ``A x n`` desired changes
        ``updates``, as :meth:`ResidentPopulation._pulsed_update` computes them with
        separate operations: ``dW = u (1 / alpha_l)`` in array units, the counts
        :func:`neurosim.devices.pulse_counts` of ``|dW| / dw_min`` (float64) with the
        chip's rounding key ``keys[k, l, 0]`` (``A x n_layers x 2`` int64 words), none to
        a stuck device (``free``: ``A x n_l``, flat), and the direction ``dW > 0``.
        Returns ``(counts, up)``, ``A x n_l`` int32 and bool; adds each chip's pulses up
        and down to ``counted[k, l]`` (``A x n_layers x 2`` int64)."""
        rows = updates.shape[0]
        w_off, n_out, n_in, _ = (int(value) for value in self.layout[l])
        n = n_out * n_in
        counts = torch.empty((rows, n), dtype=torch.int32, device=self.device)
        up = torch.empty((rows, n), dtype=torch.bool, device=self.device)
        assert updates.is_contiguous() and keys.is_contiguous() and counted.is_contiguous()
        self.kernels.pulse_counts[(-(-n // BLOCK), rows)](
            updates, updates.shape[1], w_off, n, inverse_alphas, self.n_layers, l,
            _float64s(dw_min, max_pulses, device=self.device), keys, free, counts, up,
            counted, max_pulses,
            rng.GOLDEN, rng.MUL1, rng.MUL2, BLOCK=BLOCK, enable_fp_fusion=False)
        return counts, up


@functools.lru_cache(maxsize=64)
def _float64s(*values: float, device: torch.device) -> torch.Tensor:
    """``values`` as a float64 tensor on ``device``: a Python float argument would reach a
    Triton kernel as float32, and an int argument equal to 1 as a constant (Triton
    specializes it), which has no ``.to``."""
    return torch.tensor(values, dtype=torch.float64, device=device)
