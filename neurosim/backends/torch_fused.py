"""A population step's optimizer and ideal update as one Triton kernel (torch on CUDA).

The separate torch operations of :meth:`TorchBackend._optimize` and
:meth:`TorchBackend._ideal_update` pass over the population's ``M x n`` state about 34
times per step for Adam (each operation reads its operands and writes its result: 81 MB
per pass for 256 chips of a ``[784, 100, 10]`` network in float32) and launch about 20
kernels. :func:`fused_step` makes one pass: per element it reads the gradient ``g``, the
moments and the parameter, and writes them back (7 passes for Adam), in one launch.

The arithmetic is the specification's, operation by operation and rounding by rounding
(:meth:`neurosim.backends.numpy_ref.NumpyBackend.optimizer_step` and ``apply_ideal_update``),
so the kernel is bit-identical to the separate operations:

* Adam: ``m <- m b1 + g (1 - b1)``, ``v <- v b2 + (g (1 - b2)) g``,
  ``u = (m (-step_size)) / (sqrt(v) / sqrt(1 - b2^t) + eps)``;
  SGD with momentum ``mu``: ``m <- m mu + g``, ``u = m (-lr)``; plain SGD: ``u = g (-lr)``;
* the ideal update: a weight ``w <- clip(w + u (1 / alpha_l), w_min_l, w_max_l)``, a bias
  ``b <- b + u``; or, without it, ``u`` written out (the desired change that a pulsed
  update then programs).

Every product and sum is rounded on its own: the kernel is compiled with
``enable_fp_fusion=False`` (no fused multiply-adds), divides with ``div_rn`` and takes
``sqrt_rn`` (IEEE, correctly rounded; Triton's plain ``/`` and ``sqrt`` are approximations
on a GPU). Those two are float32 functions in Triton (its interpreter refuses float64, and
libdevice's float64 versions do not run there), so the kernel is for float32 state, what
GPU runs use; float64 runs keep the separate operations. The scalars (Adam's ``b1``,
``1 - b1`` ..., each chip's step size and ``1 / alpha_l``) are rounded to float32 on the
host and read from device tensors.

Triton is used where it is installed (the CUDA builds of torch ship it) and the state is
on a GPU. Its interpreter (``TRITON_INTERPRET=1``) runs the same kernel on CPU tensors
with NumPy operations, which is how the tests check it on a machine without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import torch

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
def _kernel(interpret: bool):
    """The Triton kernel, defined on first use (``interpret``: compiled for the
    interpreter or for the GPU; Triton reads the setting when it decorates)."""
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

    return step


@functools.lru_cache(maxsize=64)
def _constants(cfg: OptimizerConfig, dtype: np.dtype, device: torch.device) -> torch.Tensor:
    """The optimizer's step-independent scalars in ``dtype`` on ``device``: Adam's
    ``b1, 1 - b1, b2, 1 - b2, eps``; SGD's ``mu, -lr``."""
    t = dtype.type
    values = ([t(cfg.beta1), t(1 - cfg.beta1), t(cfg.beta2), t(1 - cfg.beta2), t(cfg.eps)]
              if cfg.name == "adam" else [t(cfg.momentum), -t(cfg.lr)])
    return torch.tensor(np.array(values, dtype=dtype), device=device)


class FusedStep:
    """:func:`fused_step` for the chips of one layout (``chip``: a
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
        self.segments = torch.as_tensor(segments, device=device)
        self.bounds = torch.as_tensor(np.ascontiguousarray(chip.bounds_typed), device=device)
        self.kernel = _kernel(interpreted())

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
        self.kernel[(-(-n // BLOCK), rows)](
            params, m, v, grads, out, self.segments,
            inverse_alphas if update else grads, self.bounds,
            _constants(cfg, self.dtype, self.device), per_chip,
            per_chip.shape[1] if per_chip.shape[0] > 1 else 0, n, self.n_layers,
            OPTIMIZER=optimizer_code(cfg), UPDATE=update, BLOCK=BLOCK,
            enable_fp_fusion=False)
