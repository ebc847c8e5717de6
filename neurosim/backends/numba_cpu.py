"""The Numba CPU backend: fused compiled kernels, the default.

Each kernel computes exactly what :mod:`neurosim.backends.numpy_ref` computes, in the same
order of floating-point operations where that is cheap (so results agree to rounding of the
BLAS products), but fused: one compiled call does the whole forward and backward pass of
every layer (the batch-mean 1/B applied once to the output error) with every array read
through its periphery, one does the optimizer over the whole flat parameter buffer, one the
array update. Matrix products go to BLAS through :mod:`neurosim.backends.numba_gemm` (split
between threads by shape, so results do not depend on the thread count); everything else
is loops over contiguous arrays or
views, written so that LLVM vectorizes them (``error_model="numpy"``, one ``range(n)`` per
contiguous segment).

A population of chips (:mod:`neurosim.population`) steps in one call of
:func:`population_step_kernel`: parallel over the chips, each chip's kernels serial on its
thread with the same blocks of every product, so each chip's result is bit-identical to
its single-chip step.
"""

from __future__ import annotations

from contextlib import nullcontext

import numba
import numpy as np
import scipy.linalg  # noqa: F401  (loads the BLAS that numba's np.dot calls, for threadpoolctl)
from numba import prange
from threadpoolctl import ThreadpoolController, threadpool_limits

from neurosim.backends import numba_devices
from neurosim.backends.base import Backend
from neurosim.backends.numba_gemm import MAX_PARTS, dot, dot_into
from neurosim.backends.numba_periphery import kernel_scalars, read_kernel
from neurosim.backends.numba_rng import kernel, normal_kernel, uniform_kernel
from neurosim.chip import Chip
from neurosim.optimizers import OptimizerState
from neurosim.population import DEVICE_ARRAYS
from neurosim.rules import RuleCode

_BP, _FA, _DFA = int(RuleCode.BP), int(RuleCode.FA), int(RuleCode.DFA)

# ---------------------------------------------------------------- network kernels
@kernel
def _read(w, x, periph, key, transposed, max_parts):
    """A read of array ``w`` (``x @ w.T``; ``transposed``: ``x @ w``) through the periphery
    (``periph``: :func:`numba_periphery.kernel_scalars`, ``None`` for an ideal read)."""
    if periph is None:
        return dot(x, w, max_parts) if transposed else dot(x, w.T, max_parts)
    return read_kernel(w, x, periph[0], periph[1], periph[2], periph[3], periph[4],
                       periph[5], periph[6], periph[7], key, transposed, max_parts)


@kernel
def _forward(params, layout, alphas, zero, x, act, periph, keys, max_parts):
    """Lists of pre-activations (``pre[l+1] = a_l``) and inputs (``post[l] = h_{l}``)."""
    n_layers = layout.shape[0]
    batch = x.shape[0]
    pre = [x]
    post = [x]
    for l in range(n_layers):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        a = _read(w, post[l], periph, keys[l, 0], False, max_parts)
        alpha = alphas[l]
        last = l == n_layers - 1
        h = a if last else np.empty_like(a)
        for i in range(batch):
            for j in range(n_out):
                v = alpha * a[i, j] + params[b_off + j]
                a[i, j] = v
                if not last:
                    if act == 0:
                        h[i, j] = v if v > 0 else zero
                    else:
                        h[i, j] = np.tanh(v)
        pre.append(a)
        post.append(h)
    return pre, post


@kernel
def _scaled_copy(out, x, scale):
    for k in range(x.shape[0]):
        out[k] = scale * x[k]


@kernel
def logits_kernel(params, layout, alphas, x, act, periph, keys, max_parts):
    zero = params[:1][0] * 0
    pre, _ = _forward(params, layout, alphas, zero, x, act, periph, keys, max_parts)
    return pre[-1]


@kernel
def signals_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act,
                   periph, fb_periph, keys, max_parts):
    """Forward pass, softmax cross-entropy and the rule's backward pass: (summed loss,
    correct predictions, layer inputs ``post[l] = h_l``, errors ``deltas[l]``).
    ``periph``/``fb_periph``: the forward/feedback arrays' periphery scalars, ``None`` for
    ideal reads (and for regenerated feedback, multiplied digitally); ``max_parts``: see
    :mod:`neurosim.backends.numba_gemm`."""
    n_layers = layout.shape[0]
    batch = x.shape[0]
    zero = params[:1][0] * 0
    batch_count = zero + batch
    pre, post = _forward(params, layout, alphas, zero, x, act, periph, keys, max_parts)
    logits = pre[n_layers]
    n_classes = logits.shape[1]
    e = np.empty_like(logits)
    loss = 0.0
    correct = 0
    for i in range(batch):
        best = 0
        m = logits[i, 0]
        for j in range(1, n_classes):
            if logits[i, j] > m:
                m = logits[i, j]
                best = j
        s = zero
        for j in range(n_classes):
            s += np.exp(logits[i, j] - m)
        log_s = np.log(s)
        for j in range(n_classes):
            e[i, j] = (np.exp((logits[i, j] - m) - log_s) - (1 if j == y[i] else 0)) / batch_count
        loss -= (logits[i, y[i]] - m) - log_s
        if best == y[i]:
            correct += 1
    deltas = [e for _ in range(n_layers)]
    for l in range(n_layers - 1, 0, -1):
        delta = deltas[l]
        w_off, n_out, n_in = layout[l, 0], layout[l, 1], layout[l, 2]
        if rule == _BP:  # weight transport: the forward array, read transposed
            w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
            signal = _read(w, delta, periph, keys[l, 1], True, max_parts)
            alpha = alphas[l]
            for i in range(batch):
                for k in range(n_in):
                    signal[i, k] = alpha * signal[i, k]
        else:
            index = l if rule == _FA else l - 1
            offset, rows, cols = fb_layout[index, 0], fb_layout[index, 1], fb_layout[index, 2]
            B = feedback[offset:offset + rows * cols].reshape((rows, cols))
            signal = _read(B, delta if rule == _FA else e, fb_periph, keys[index, 2], False,
                           max_parts)
        a_prev = pre[l]
        h_prev = post[l]
        for i in range(batch):
            for k in range(n_in):
                if act == 0:
                    signal[i, k] = signal[i, k] * (1 if a_prev[i, k] > 0 else 0)
                else:
                    signal[i, k] = signal[i, k] * (1 - h_prev[i, k] * h_prev[i, k])
        deltas[l - 1] = signal
    return loss, correct, post[:n_layers], deltas


@kernel
def gradients_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act, periph,
                     fb_periph, keys, max_parts, out):
    """The rule's gradients ``delta_l^T h_{l-1}`` (and bias sums) from :func:`signals_kernel`."""
    loss, correct, post, deltas = signals_kernel(params, layout, alphas, feedback, fb_layout,
                                                 x, y, rule, act, periph, fb_periph, keys,
                                                 max_parts)
    batch = x.shape[0]
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        delta = deltas[l]
        g = out[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        if batch == 1:  # a rank-1 outer product: a loop beats a K=1 GEMM call
            h = post[l][0]
            for j in range(n_out):
                _scaled_copy(g[j], h, delta[0, j])
        else:
            dot_into(delta.T, post[l], g, max_parts)
        bias = out[b_off:b_off + n_out]
        bias[:] = 0
        for i in range(batch):
            for j in range(n_out):
                bias[j] += delta[i, j]
    return loss, correct


@kernel
def optimizer_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum,
                     step_size, inverse_sqrt_c2, m, v, grads, out):
    """Adam (code 1) or SGD with optional momentum (code 0); scalars in the buffer dtype.

    Adam in PyTorch's form: ``out = (-step_size * m) / (sqrt(v) * inverse_sqrt_c2 + eps)``
    with ``step_size = lr / (1 - b1^t)`` and ``inverse_sqrt_c2 = 1 / sqrt(1 - b2^t)``.
    """
    n = grads.shape[0]
    if code == 1:  # one pass over the four buffers (the moments stay in registers)
        for i in range(n):
            g = grads[i]
            m_i = b1 * m[i] + one_minus_b1 * g
            v_i = b2 * v[i] + one_minus_b2 * g * g
            m[i] = m_i
            v[i] = v_i
            out[i] = (-step_size * m_i) / (np.sqrt(v_i) * inverse_sqrt_c2 + eps)
    elif m.shape[0] > 0:
        for i in range(n):
            m[i] = momentum * m[i] + grads[i]
            out[i] = -lr * m[i]
    else:
        for i in range(n):
            out[i] = -lr * grads[i]


@kernel
def _apply_segment(w, dw, inverse_alpha, lo, hi):
    """``w <- clip(w + dw * inverse_alpha, lo, hi)`` on one contiguous segment."""
    for i in range(w.shape[0]):
        value = w[i] + dw[i] * inverse_alpha
        w[i] = min(max(value, lo), hi)


@kernel
def ideal_update_kernel(params, layout, inverse_alphas, bounds, deltas):
    """``w <- clip(w + dW * (1 / alpha), w_min, w_max)``, ``b <- b + db``, in the buffer
    dtype, on contiguous per-layer views (so that LLVM vectorizes the loops)."""
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        w_end = w_off + n_out * n_in
        _apply_segment(params[w_off:w_end], deltas[w_off:w_end], inverse_alphas[l],
                       bounds[l, 0], bounds[l, 1])
        bias, db = params[b_off:b_off + n_out], deltas[b_off:b_off + n_out]
        for j in range(n_out):
            bias[j] = bias[j] + db[j]


@kernel
def train_step_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act, periph,
                      fb_periph, keys, max_parts, grads, code, lr, b1, one_minus_b1, b2,
                      one_minus_b2, eps, momentum, step_size, inverse_sqrt_c2, m, v, deltas,
                      inverse_alphas, bounds):
    """One training step of one chip with the ideal update, in one call:
    :func:`gradients_kernel`, :func:`optimizer_kernel`, :func:`ideal_update_kernel`, the
    kernels and order of :meth:`Backend.train_step` (one dispatch instead of three: at
    batch 1 the calls, not the arithmetic, are most of a step)."""
    loss, hits = gradients_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act,
                                  periph, fb_periph, keys, max_parts, grads)
    optimizer_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                     inverse_sqrt_c2, m, v, grads, deltas)
    ideal_update_kernel(params, layout, inverse_alphas, bounds, deltas)
    return loss, hits


@kernel
def pulsed_layers_kernel(params, layout, inverse_alphas, deltas, dw_min, max_pulses, keys,
                         device_offsets, step_up, step_down, w_min, w_max, stuck, model_code,
                         dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels,
                         device_dw_min, pulses):
    """:meth:`Backend.apply_pulsed_update` of one chip, compiled: every layer's ``dW``
    (array units) realized by :func:`numba_devices.pulsed_update_kernel` with the layer's
    pulse keys ``keys[l]`` (rounding, noise), the pulses sent added to ``pulses[l]``
    (up, down); ``b += db``. The device arrays hold every layer's devices back to back
    (``device_offsets``)."""
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        w_end = w_off + n_out * n_in
        lo, hi = device_offsets[l], device_offsets[l + 1]
        dw = deltas[w_off:w_end] * inverse_alphas[l]
        up, down = numba_devices.pulsed_update_kernel(
            params[w_off:w_end], dw, dw_min, max_pulses, keys[l, 0], keys[l, 1], 0,
            step_up[lo:hi], step_down[lo:hi], w_min[lo:hi], w_max[lo:hi], stuck[lo:hi],
            model_code, dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels,
            device_dw_min)
        pulses[l, 0] += up
        pulses[l, 1] += down
        for j in range(n_out):
            params[b_off + j] = params[b_off + j] + deltas[b_off + j]


@kernel(parallel=True)
def population_step_kernel(active, params, layout, alphas, inverse_alphas, bounds, feedback,
                           fb_layout, x, y, rule, act, periph, fb_periph, keys, max_parts,
                           grads, deltas, code, lr, b1, one_minus_b1, b2, one_minus_b2, eps,
                           momentum, step_size, inverse_sqrt_c2, m, v, pulsed, pulse_keys,
                           dw_min, max_pulses, device_offsets, step_up, step_down, w_min,
                           w_max, stuck, model_code, dw_min_ctoc, gamma_up, gamma_down, c_up,
                           c_down, levels, device_dw_min, losses, correct, pulses):
    """One training step of the chips ``active`` of a population, one chip per thread:
    chip ``c = active[k]`` (row ``c`` of the stacked buffers) runs :func:`gradients_kernel`
    on ``x[k]``, ``y[k]`` with read keys ``keys[k]``, :func:`optimizer_kernel` (its Adam
    scalars ``step_size[k]``, ``inverse_sqrt_c2[k]``) and the ideal update or
    :func:`pulsed_layers_kernel` (``pulse_keys[k]``; its pulses into ``pulses[k]``), the
    same kernels in the same order as a single-chip step. ``max_parts < 0`` (serial
    blocks, :mod:`numba_gemm`) makes every product the same BLAS calls as the single-chip
    step's, so each chip's result is bit-identical to stepping it alone. Its (summed loss,
    correct predictions) go to ``losses[k]``, ``correct[k]``."""
    for k in prange(active.shape[0]):
        c = active[k]
        loss, hits = gradients_kernel(params[c], layout, alphas[c], feedback[c], fb_layout,
                                      x[k], y[k], rule, act, periph, fb_periph, keys[k],
                                      max_parts, grads[c])
        optimizer_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum,
                         step_size[k], inverse_sqrt_c2[k], m[c], v[c], grads[c], deltas[c])
        if pulsed:
            pulsed_layers_kernel(params[c], layout, inverse_alphas[c], deltas[c], dw_min,
                                 max_pulses, pulse_keys[k], device_offsets, step_up[c],
                                 step_down[c], w_min[c], w_max[c], stuck[c], model_code,
                                 dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels,
                                 device_dw_min, pulses[k])
        else:
            ideal_update_kernel(params[c], layout, inverse_alphas[c], bounds, deltas[c])
        losses[k] = loss
        correct[k] = hits


@kernel
def feedback_kernel(keys, offsets, sizes, uniform_dist, scales, out):
    """Re-draw every feedback matrix from its key (regenerated feedback)."""
    for index in range(keys.shape[0]):
        if uniform_dist[index]:
            u = uniform_kernel(keys[index], sizes[index])
            for i in range(sizes[index]):
                out[offsets[index] + i] = scales[index] * (2.0 * u[i] - 1.0)
        else:
            z = normal_kernel(keys[index], sizes[index])
            for i in range(sizes[index]):
                out[offsets[index] + i] = scales[index] * z[i]


class NumbaBackend(Backend):
    name = "numba"
    device_kernels = numba_devices

    def __init__(self, dtype: str = "float32", threads: int | None = None,
                 deterministic: bool = True):
        """``threads`` limits Numba's threads and the BLAS threads of the matrix products
        (process-wide: set it when several simulations share the cores).

        ``deterministic``: products are split between Numba's threads by shape
        (:mod:`numba_gemm`), each block one single-threaded BLAS call, so results do not
        depend on the thread count; otherwise each product is one call to the
        multithreaded BLAS (faster on few cores; rounding depends on the thread count)."""
        super().__init__(dtype)
        if threads is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self.max_parts = MAX_PARTS if deterministic else 1
        threadpool_limits(1 if deterministic else numba.get_num_threads(), user_api="blas")
        self.blas = ThreadpoolController().select(user_api="blas")

    def uniform(self, key: int, n: int) -> np.ndarray:
        return uniform_kernel(np.uint64(key), n)

    def normal(self, key: int, n: int) -> np.ndarray:
        return normal_kernel(np.uint64(key), n)

    def _feedback_args(self, chip: Chip) -> tuple:
        specs = [s for s in chip.feedback_specs if s is not None]
        offsets = [chip.feedback_layout[s.layer, 0] for s in specs]
        return (np.array([s.key for s in specs], dtype=np.uint64),
                np.array(offsets, dtype=np.int64),
                np.array([s.size for s in specs], dtype=np.int64),
                np.array([s.distribution == "uniform" for s in specs], dtype=np.bool_),
                np.array([s.scale for s in specs], dtype=np.float64))

    def regenerate_feedback(self, chip: Chip, out: np.ndarray) -> None:
        feedback_kernel(*self._feedback_args(chip), out)

    @staticmethod
    def _periphery(chip: Chip) -> tuple:
        """Kernel arguments of the forward and feedback periphery (``None``: ideal reads;
        regenerated feedback is digital) and of the chip's bookkeeping."""
        def scalars(config, digital=False):
            return None if config.is_ideal or digital else kernel_scalars(config, chip.dtype)
        return (scalars(chip.forward_periphery),
                scalars(chip.feedback_periphery, chip.feedback_kind == "regenerated"))

    def logits(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=chip.dtype)
        periph, _ = self._periphery(chip)
        return logits_kernel(chip.params, chip.layout, chip.alphas_typed, x,
                             chip.activation_code, periph, chip.read_keys(training=False),
                             self.max_parts)

    def _signal_args(self, chip, feedback, x, y, rule_code, training) -> tuple:
        x = np.ascontiguousarray(x, dtype=chip.dtype)
        y = np.ascontiguousarray(y, dtype=np.int64)
        return (chip.params, chip.layout, chip.alphas_typed, feedback, chip.feedback_layout, x,
                y, int(rule_code), chip.activation_code, *self._periphery(chip),
                chip.read_keys(training), self.max_parts)

    def local_signals(self, chip, feedback, x, y, rule_code, training=False):
        loss, correct, inputs, deltas = signals_kernel(
            *self._signal_args(chip, feedback, x, y, rule_code, training))
        return float(loss), int(correct), list(inputs), list(deltas)

    def gradients(self, chip, feedback, x, y, rule_code, out, training=False):
        loss, correct = gradients_kernel(
            *self._signal_args(chip, feedback, x, y, rule_code, training), out)
        return float(loss), int(correct)

    @staticmethod
    def _optimizer_args(state: OptimizerState, t: type) -> tuple:
        """:func:`optimizer_kernel`'s arguments before ``grads`` and ``out``: the code, the
        scalars in the buffer dtype ``t`` (Adam's for the step about to be taken), the
        moments."""
        cfg = state.config
        step_size, inverse_sqrt_c2 = state.adam_scalars()
        return (state.code, t(cfg.lr), t(cfg.beta1), t(1 - cfg.beta1), t(cfg.beta2),
                t(1 - cfg.beta2), t(cfg.eps), t(cfg.momentum), t(step_size),
                t(inverse_sqrt_c2), state.m, state.v)

    def optimizer_step(self, state: OptimizerState, grads, out):
        optimizer_kernel(*self._optimizer_args(state, grads.dtype.type), grads, out)
        state.step += 1

    def train_step(self, chip, state, x, y, grads, deltas):
        """:meth:`Backend.train_step`; with the ideal update, one compiled call
        (:func:`train_step_kernel`): the same kernels in the same order."""
        if chip.update_mode != "ideal":
            return super().train_step(chip, state, x, y, grads, deltas)
        loss, correct = train_step_kernel(
            *self._signal_args(chip, self.feedback_buffer(chip), x, y, chip.rule.code, True),
            grads, *self._optimizer_args(state, chip.dtype.type), deltas,
            chip.inverse_alphas_typed, chip.bounds_typed)
        state.step += 1
        chip.update_count += 1
        return float(loss), int(correct)

    def apply_ideal_update(self, chip: Chip, deltas):
        ideal_update_kernel(chip.params, chip.layout, chip.inverse_alphas_typed,
                            chip.bounds_typed, deltas)

    def population_step(self, population, states, active, x, y):
        """All active chips in one call of :func:`population_step_kernel` (parallel over
        chips, each chip's products serial: bit-identical to single-chip steps, see
        :mod:`numba_gemm`); in-array (stochastic) updates loop over the chips. BLAS runs
        single-threaded in the call (the deterministic mode's setting anyway)."""
        chip = population.chips[0]
        if chip.update_mode == "stochastic":
            return super().population_step(population, states, active, x, y)
        index = np.asarray(active, dtype=np.int64)
        n = index.shape[0]
        m, v = population.moments(states)
        cfg, t = states[active[0]].config, chip.dtype.type
        scalars = np.array([states[c].adam_scalars() for c in active]).reshape(n, 2)
        pulsed = chip.update_mode == "pulsed"
        if pulsed:
            devices = population.devices
            device = (*(devices[name] for name in DEVICE_ARRAYS),
                      *numba_devices.device_args(chip.devices[0])[len(DEVICE_ARRAYS):])
            pulse_keys = population.pulse_keys(active)
        else:
            empty = np.zeros((population.size, 0))
            device = (empty, empty, empty, empty, empty.astype(np.int8), np.int64(0),
                      *np.zeros(7))
            pulse_keys = np.zeros((n, chip.n_layers, 2), dtype=np.uint64)
        losses = np.empty(n)
        correct = np.empty(n, dtype=np.int64)
        pulses = np.zeros((n, chip.n_layers, 2), dtype=np.int64)
        with (nullcontext() if self.max_parts > 1 else self.blas.limit(limits=1)):
            population_step_kernel(
                index, population.params, chip.layout, population.alphas,
                population.inverse_alphas, chip.bounds_typed, population.feedback(self),
                chip.feedback_layout, np.ascontiguousarray(x, dtype=chip.dtype),
                np.ascontiguousarray(y, dtype=np.int64), int(chip.rule.code),
                chip.activation_code, *self._periphery(chip), population.read_keys(active),
                -self.max_parts, population.grads, population.deltas, states[active[0]].code,
                t(cfg.lr), t(cfg.beta1), t(1 - cfg.beta1), t(cfg.beta2), t(1 - cfg.beta2),
                t(cfg.eps), t(cfg.momentum), scalars[:, 0].astype(chip.dtype),
                scalars[:, 1].astype(chip.dtype), m, v, pulsed, pulse_keys,
                np.float64(chip.devices[0].dw_min if pulsed else 0.0),
                np.int64(chip.config.forward.update.max_pulses), population.device_offsets,
                *device, losses, correct, pulses)
        for k, c in enumerate(active):
            population.chips[c].update_count += 1
            population.chips[c].pulses += pulses[k]
            states[c].step += 1
        return [(float(losses[k]), int(correct[k])) for k in range(n)]
