"""The Numba CPU backend: fused compiled kernels, the default.

Each kernel computes exactly what :mod:`neurosim.backends.numpy_ref` computes, in the same
order of floating-point operations where that is cheap (so results agree to rounding of the
matrix products), but fused: one compiled call does the whole forward and backward pass of
every layer (the batch-mean 1/B applied once to the output error) with every array read
through its periphery, one does the optimizer over the whole flat parameter buffer, one the
array update. Matrix products go through :mod:`neurosim.backends.numba_gemm` (reads and
weight gradients by register tiles, other products by BLAS; split between threads by
shape, so results do not depend on the thread count); everything else is loops over
contiguous arrays or views, written so that LLVM vectorizes them (``error_model="numpy"``,
one ``range(n)`` per contiguous segment, scalars in the buffer dtype).

A population of chips (:mod:`neurosim.population`) steps in one call of
:func:`population_step_kernel`: parallel over the chips, each chip's kernels serial on its
thread with the same blocks of every product, so each chip's result is bit-identical to
its single-chip step.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import numba
import numpy as np
import scipy.linalg  # noqa: F401  (loads the BLAS that numba's np.dot calls, for threadpoolctl)
from numba import prange
from threadpoolctl import ThreadpoolController, threadpool_limits

from neurosim import rng
from neurosim.backends import numba_devices
from neurosim.backends.base import Backend
from neurosim.backends.numba_gemm import MAX_PARTS, dot, dot_into
from neurosim.backends.numba_periphery import kernel_scalars, read_kernel
from neurosim.backends.numba_rng import (kernel, normal_kernel, scalar_like, threaded_draws,
                                         threaded_scaled_draws, uniform_kernel)
from neurosim.chip import Chip
from neurosim.config import OptimizerConfig
from neurosim.optimizers import OPTIMIZER_CODES, OptimizerState
from neurosim.population import DEVICE_ARRAYS, shared_optimizer
from neurosim.rules import RuleCode

_BP, _FA, _SDFA, _DRTP = (int(code) for code in (RuleCode.BP, RuleCode.FA, RuleCode.SDFA,
                                                  RuleCode.DRTP))

# ---------------------------------------------------------------- network kernels
@kernel
def _read(w, x, periph, key, transposed, max_parts, rereads):
    """A read of array ``w`` (``x @ w.T``; ``transposed``: ``x @ w``) through the periphery
    (``periph``: :func:`numba_periphery.kernel_scalars`, ``None`` for an ideal read), its
    re-reads added to ``rereads`` (a row of :attr:`Chip.rereads`). The operands are typed
    as writable C arrays (the same memory when contiguous), so each product and periphery
    kernel below is compiled once, whether the caller's inputs are read-only (a batch) or
    not (a hidden layer's activations, an error)."""
    w, x = np.ascontiguousarray(w), np.ascontiguousarray(x)
    if periph is None:
        return dot(x, w, max_parts) if transposed else dot(x, w.T, max_parts)
    return read_kernel(w, x, periph[0], periph[1], periph[2], periph[3], periph[4],
                       periph[5], periph[6], periph[7], periph[8], periph[9], periph[10],
                       periph[11], key, transposed, max_parts, rereads)


@kernel
def _forward(params, layout, alphas, zero, x, act, periph, keys, rereads, max_parts):
    """Lists of pre-activations (``pre[l+1] = a_l``) and inputs (``post[l] = h_{l}``);
    ``rereads``: the pass's :attr:`Chip.rereads` (``2 x n_layers x 3``)."""
    n_layers = layout.shape[0]
    batch = x.shape[0]
    pre = [x]
    post = [x]
    for l in range(n_layers):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        a = _read(w, post[l], periph, keys[l, 0], False, max_parts, rereads[0, l])
        alpha = alphas[l]
        bias = params[b_off:b_off + n_out]
        for i in range(batch):
            a_i = a[i]
            for j in range(n_out):
                a_i[j] = alpha * a_i[j] + bias[j]
        h = a if l == n_layers - 1 else np.empty_like(a)
        if l == n_layers - 1:
            pass
        elif act == 0:  # one loop per activation, so that LLVM vectorizes ReLU's
            for i in range(batch):
                a_i, h_i = a[i], h[i]
                for j in range(n_out):
                    h_i[j] = a_i[j] if a_i[j] > 0 else zero
        else:
            for i in range(batch):
                a_i, h_i = a[i], h[i]
                for j in range(n_out):
                    h_i[j] = np.tanh(a_i[j])
        pre.append(a)
        post.append(h)
    return pre, post


@kernel
def _scaled_copy(out, x, scale):
    for k in range(x.shape[0]):
        out[k] = scale * x[k]


@kernel
def _outer_rows(d, h, g, lo, hi):
    for j in range(lo, hi):
        _scaled_copy(g[j], h, d[j])


@kernel(parallel=True)
def _outer_blocks(d, h, g, parts):
    rows = g.shape[0]
    for p in prange(parts):
        _outer_rows(d, h, g, rows * p // parts, rows * (p + 1) // parts)


@kernel
def outer_into(d, h, g, max_parts):
    """``g = d h^T`` (batch 1's weight gradient, rank 1): blocks of rows in parallel on
    Numba's threads when the matrix is large enough (:func:`chunks_for`; ``max_parts < 0``:
    serially). Each element is one product, so the blocks do not change the result."""
    parts = min(chunks_for(g.size, abs(max_parts)), g.shape[0])
    if parts == 1 or max_parts < 0:
        _outer_rows(d, h, g, 0, g.shape[0])
    else:
        _outer_blocks(d, h, g, parts)


@kernel
def logits_kernel(params, layout, alphas, x, act, periph, keys, rereads, max_parts):
    zero = scalar_like(params, 0)
    pre, _ = _forward(params, layout, alphas, zero, x, act, periph, keys, rereads, max_parts)
    return pre[-1]


@kernel
def signals_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act,
                   periph, fb_periph, keys, rereads, max_parts):
    """Forward pass, softmax cross-entropy and the rule's backward pass: (summed loss,
    correct predictions, layer inputs ``post[l] = h_l``, errors ``deltas[l]``, each sample's
    through the reads, divided by the batch size after them as in
    :meth:`NumpyBackend.local_signals`).
    ``periph``/``fb_periph``: the forward/feedback arrays' periphery scalars, ``None`` for
    ideal reads (and for regenerated feedback, multiplied digitally); ``max_parts``: see
    :mod:`neurosim.backends.numba_gemm`."""
    n_layers = layout.shape[0]
    batch = x.shape[0]
    zero, one = scalar_like(params, 0), scalar_like(params, 1)
    batch_count = scalar_like(params, batch)
    pre, post = _forward(params, layout, alphas, zero, x, act, periph, keys, rereads,
                         max_parts)
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
            e[i, j] = np.exp((logits[i, j] - m) - log_s) - (1 if j == y[i] else 0)
        loss -= (logits[i, y[i]] - m) - log_s
        if best == y[i]:
            correct += 1
    direct = e  # what a direct rule's arrays read (numpy_ref.direct_signal): e, sign(e), y
    if rule == _SDFA or rule == _DRTP:
        direct = np.empty_like(e)
        for i in range(batch):
            for j in range(n_classes):
                if rule == _SDFA:
                    direct[i, j] = np.sign(e[i, j])
                else:
                    direct[i, j] = one if j == y[i] else zero
    deltas = [e for _ in range(n_layers)]
    for l in range(n_layers - 1, 0, -1):
        delta = deltas[l]
        w_off, n_out, n_in = layout[l, 0], layout[l, 1], layout[l, 2]
        if rule == _BP:  # weight transport: the forward array, read transposed
            w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
            signal = _read(w, delta, periph, keys[l, 1], True, max_parts, rereads[1, l])
            alpha = alphas[l]
            for i in range(batch):
                for k in range(n_in):
                    signal[i, k] = alpha * signal[i, k]
        else:
            index = l if rule == _FA else l - 1
            offset, rows, cols = fb_layout[index, 0], fb_layout[index, 1], fb_layout[index, 2]
            B = feedback[offset:offset + rows * cols].reshape((rows, cols))
            signal = _read(B, delta if rule == _FA else direct, fb_periph, keys[index, 2],
                           False, max_parts, rereads[1, index])
        a_prev = pre[l]
        h_prev = post[l]
        if act == 0:  # one loop per activation (vectorized)
            for i in range(batch):
                s_i, a_i = signal[i], a_prev[i]
                for k in range(n_in):
                    s_i[k] = s_i[k] * (one if a_i[k] > 0 else zero)
        else:
            for i in range(batch):
                s_i, h_i = signal[i], h_prev[i]
                for k in range(n_in):
                    s_i[k] = s_i[k] * (1 - h_i[k] * h_i[k])
        deltas[l - 1] = signal
    for l in range(n_layers):  # the batch mean's 1/batch, after the reads (a distinct array each)
        delta = deltas[l]
        for i in range(batch):
            for k in range(delta.shape[1]):
                delta[i, k] = delta[i, k] / batch_count
    return loss, correct, post[:n_layers], deltas


@kernel
def gradients_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act, periph,
                     fb_periph, keys, rereads, max_parts, out):
    """The rule's gradients ``delta_l^T h_{l-1}`` (and bias sums) from :func:`signals_kernel`."""
    loss, correct, post, deltas = signals_kernel(params, layout, alphas, feedback, fb_layout,
                                                 x, y, rule, act, periph, fb_periph, keys,
                                                 rereads, max_parts)
    batch = x.shape[0]
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        delta = deltas[l]
        g = out[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        if batch == 1:  # rank 1: too little work for dot_into's split (one thread), but
            # its writes pay for row blocks on the threads (outer_into)
            outer_into(delta[0], post[l][0], g, max_parts)
        else:
            dot_into(delta.T, post[l], g, max_parts)
        bias = out[b_off:b_off + n_out]
        bias[:] = 0
        for i in range(batch):
            for j in range(n_out):
                bias[j] += delta[i, j]
    return loss, correct


@kernel(inline="always")
def _realize(w, i, d_i, inverse_alpha, lo, hi, clip):
    """The ideal update of element ``i``: ``w <- clip(w + dW * (1 / alpha), lo, hi)`` (a
    bias, ``clip`` false: ``b <- b + db``)."""
    if clip:
        value = w[i] + d_i * inverse_alpha
        w[i] = min(max(value, lo), hi)
    else:
        w[i] = w[i] + d_i


@kernel
def _step_segment(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                  inverse_sqrt_c2, m, v, g, d, w, inverse_alpha, lo, hi, update, clip):
    """The optimizer on one contiguous segment (``g``, ``d``, ``w`` and the moments ``m``,
    ``v`` views of the same elements), writing ``dW`` to ``d``; with ``update``, the array
    update of each element (:func:`_realize`) in the same pass. Adam (code 1) or SGD with
    optional momentum (code 0); scalars in the buffer dtype.

    Adam in PyTorch's form: ``dW = (-step_size * m) / (sqrt(v) * inverse_sqrt_c2 + eps)``
    with ``step_size = lr / (1 - b1^t)`` and ``inverse_sqrt_c2 = 1 / sqrt(1 - b2^t)``.
    """
    if code == 1:  # one pass over the buffers (the moments stay in registers)
        for i in range(g.shape[0]):
            g_i = g[i]
            m_i = b1 * m[i] + one_minus_b1 * g_i
            v_i = b2 * v[i] + one_minus_b2 * g_i * g_i
            m[i] = m_i
            v[i] = v_i
            d_i = (-step_size * m_i) / (np.sqrt(v_i) * inverse_sqrt_c2 + eps)
            d[i] = d_i
            if update:
                _realize(w, i, d_i, inverse_alpha, lo, hi, clip)
    elif m.shape[0] > 0:
        for i in range(g.shape[0]):
            m_i = momentum * m[i] + g[i]
            m[i] = m_i
            d_i = -lr * m_i
            d[i] = d_i
            if update:
                _realize(w, i, d_i, inverse_alpha, lo, hi, clip)
    else:
        for i in range(g.shape[0]):
            d_i = -lr * g[i]
            d[i] = d_i
            if update:
                _realize(w, i, d_i, inverse_alpha, lo, hi, clip)


@kernel
def ideal_update_kernel(params, layout, inverse_alphas, bounds, deltas):
    """``w <- clip(w + dW * (1 / alpha), w_min, w_max)``, ``b <- b + db`` (:func:`_realize`),
    in the buffer dtype, on contiguous per-layer views (so that LLVM vectorizes the loops)."""
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        for start, end, clip in ((w_off, w_off + n_out * n_in, True),
                                 (b_off, b_off + n_out, False)):
            w, dw = params[start:end], deltas[start:end]
            for i in range(end - start):
                _realize(w, i, dw[i], inverse_alphas[l], bounds[l, 0], bounds[l, 1], clip)


CHUNK = 1 << 15  # elements per chunk of the element-wise passes, at least
_ALIGN = 64  # chunk boundaries on whole cache lines


@kernel
def chunks_for(n, max_parts):
    """Chunks an element-wise pass over ``n`` elements is cut into (shape only)."""
    parts = 1
    while parts < max_parts and n >= 2 * parts * CHUNK:
        parts *= 2
    return parts


@kernel
def _step_range(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                inverse_sqrt_c2, m, v, grads, deltas, params, layout, inverse_alphas, bounds,
                update, lo, hi):
    """:func:`_step_segment` on the elements ``[lo, hi)`` of the flat buffers: without the
    update in one segment, with it one segment per layer's weights and biases (empty
    moments, SGD's, stay empty when sliced)."""
    if not update:  # the array and its scalars are unused: placeholders of their types
        _step_segment(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                      inverse_sqrt_c2, m[lo:hi], v[lo:hi], grads[lo:hi], deltas[lo:hi],
                      deltas[lo:hi], step_size, step_size, step_size, False, False)
        return
    for l in range(layout.shape[0]):
        w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        for start, end, clip in ((w_off, w_off + n_out * n_in, True),
                                 (b_off, b_off + n_out, False)):
            s_lo, s_hi = max(lo, start), min(hi, end)
            if s_lo < s_hi:
                _step_segment(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum,
                              step_size, inverse_sqrt_c2, m[s_lo:s_hi], v[s_lo:s_hi],
                              grads[s_lo:s_hi],
                              deltas[s_lo:s_hi], params[s_lo:s_hi], inverse_alphas[l],
                              bounds[l, 0], bounds[l, 1], True, clip)


@kernel(parallel=True)
def _step_chunks(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                 inverse_sqrt_c2, m, v, grads, deltas, params, layout, inverse_alphas, bounds,
                 update, parts):
    n = grads.shape[0]
    for p in prange(parts):
        lo = 0 if p == 0 else n * p // parts // _ALIGN * _ALIGN
        hi = n if p == parts - 1 else n * (p + 1) // parts // _ALIGN * _ALIGN
        _step_range(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                    inverse_sqrt_c2, m, v, grads, deltas, params, layout, inverse_alphas,
                    bounds, update, lo, hi)


@kernel
def optimizer_update_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum,
                            step_size, inverse_sqrt_c2, m, v, grads, deltas, params, layout,
                            inverse_alphas, bounds, update, max_parts):
    """The optimizer into ``deltas`` and, if ``update``, the ideal update
    (:func:`ideal_update_kernel`'s arithmetic), fused in one pass over the buffers
    (:func:`_step_segment`), in chunks (by size only, :func:`chunks_for`) in parallel on
    Numba's threads (``max_parts < 0``: serially, for callers already on those threads).
    Every element's arithmetic is the same whatever the chunks, so the result does not
    depend on them or on the thread count."""
    parts = chunks_for(grads.shape[0], abs(max_parts))
    if parts == 1 or max_parts < 0:
        _step_range(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                    inverse_sqrt_c2, m, v, grads, deltas, params, layout, inverse_alphas,
                    bounds, update, 0, grads.shape[0])
    else:
        _step_chunks(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum, step_size,
                     inverse_sqrt_c2, m, v, grads, deltas, params, layout, inverse_alphas,
                     bounds, update, parts)


@kernel
def train_step_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act, periph,
                      fb_periph, keys, rereads, max_parts, grads, code, lr, b1, one_minus_b1,
                      b2, one_minus_b2, eps, momentum, step_size, inverse_sqrt_c2, m, v, deltas,
                      inverse_alphas, bounds):
    """One training step of one chip with the ideal update, in one call:
    :func:`gradients_kernel`, then :func:`optimizer_update_kernel` (the optimizer and the
    update fused), the arithmetic of :meth:`Backend.train_step` (one dispatch instead of
    three: at batch 1 the calls, not the arithmetic, are most of a step)."""
    loss, hits = gradients_kernel(params, layout, alphas, feedback, fb_layout, x, y, rule, act,
                                  periph, fb_periph, keys, rereads, max_parts, grads)
    optimizer_update_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps, momentum,
                            step_size, inverse_sqrt_c2, m, v, grads, deltas, params, layout,
                            inverse_alphas, bounds, True, max_parts)
    return loss, hits


@kernel
def pulsed_layers_kernel(params, layout, inverse_alphas, deltas, dw_min, max_pulses, keys,
                         device_offsets, step_up, step_down, w_min, w_max, stuck, model_code,
                         ctoc, gamma_up, gamma_down, c_up, c_down, levels,
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
            model_code, ctoc, gamma_up, gamma_down, c_up, c_down, levels,
            device_dw_min)
        pulses[l, 0] += up
        pulses[l, 1] += down
        for j in range(n_out):
            params[b_off + j] = params[b_off + j] + deltas[b_off + j]


@kernel(parallel=True)
def population_step_kernel(active, params, layout, alphas, inverse_alphas, bounds, feedback,
                           fb_layout, x, y, rule, act, periph, fb_periph, keys, rereads,
                           max_parts, grads, deltas, code, lr, b1, one_minus_b1, b2,
                           one_minus_b2, eps, momentum, step_size, inverse_sqrt_c2, m, v,
                           pulsed, pulse_keys,
                           dw_min, max_pulses, device_offsets, step_up, step_down, w_min,
                           w_max, stuck, model_code, ctoc, gamma_up, gamma_down, c_up,
                           c_down, levels, device_dw_min, losses, correct, pulses, workers):
    """One training step of the chips ``active`` of a population, one chip per thread:
    chip ``c = active[k]`` (row ``c`` of the stacked buffers) runs :func:`gradients_kernel`
    on ``x[k]``, ``y[k]`` with read keys ``keys[k]``, :func:`optimizer_update_kernel` (its Adam
    scalars ``step_size[k]``, ``inverse_sqrt_c2[k]``) and the ideal update or
    :func:`pulsed_layers_kernel` (``pulse_keys[k]``; its pulses into ``pulses[k]``), the
    same kernels in the same order as a single-chip step. ``max_parts < 0`` (serial
    blocks, :mod:`numba_gemm`) makes every product the same BLAS calls as the single-chip
    step's, so each chip's result is bit-identical to stepping it alone. Its (summed loss,
    correct predictions) go to ``losses[k]``, ``correct[k]``.

    The scratch gradient and ``dW`` are per worker, not per chip: worker ``t`` steps the
    chips ``k = t, t + T, ...`` (``T`` workers, at most one per thread) one after another
    in ``grads[t]``, ``deltas[t]``. A worker's scratch stays in its core's cache from chip
    to chip; a scratch row per chip would be a cold 2 x 4 bytes per parameter to fetch
    from and write back to memory on every chip's step (about a third of the memory
    traffic of a population whose state does not fit the cache)."""
    n = active.shape[0]
    for t in prange(workers):
        for k in range(t, n, workers):
            c = active[k]
            loss, hits = gradients_kernel(params[c], layout, alphas[c], feedback[c],
                                          fb_layout, x[k], y[k], rule, act, periph,
                                          fb_periph, keys[k], rereads[k], max_parts, grads[t])
            optimizer_update_kernel(code, lr, b1, one_minus_b1, b2, one_minus_b2, eps,
                                    momentum, step_size[k], inverse_sqrt_c2[k], m[c], v[c],
                                    grads[t], deltas[t], params[c], layout,
                                    inverse_alphas[c], bounds, not pulsed, max_parts)
            if pulsed:
                pulsed_layers_kernel(params[c], layout, inverse_alphas[c], deltas[t],
                                     dw_min, max_pulses, pulse_keys[k], device_offsets,
                                     step_up[c], step_down[c], w_min[c], w_max[c],
                                     stuck[c], model_code, ctoc, gamma_up,
                                     gamma_down, c_up, c_down, levels, device_dw_min,
                                     pulses[k])
            losses[k] = loss
            correct[k] = hits


@kernel(parallel=True)
def population_stochastic_kernel(active, params, layout, alphas, inverse_alphas, feedback,
                                 fb_layout, x, y, rule, act, periph, fb_periph, keys,
                                 rereads, max_parts, lr, bl, update_keys, device_offsets, step_up,
                                 step_down, w_min, w_max, stuck, model_code, ctoc,
                                 gamma_up, gamma_down, c_up, c_down, levels, device_dw_min,
                                 losses, correct, pulses):
    """One in-array (stochastic) training step of the chips ``active`` of a population, in
    parallel over the chips: chip ``c = active[k]`` takes its local signals
    (:func:`signals_kernel` on ``x[k]``, ``y[k]``, read keys ``keys[k]``, serial products:
    ``max_parts < 0``), then, layer by layer, the pulse trains of
    :func:`numba_devices.stochastic_update_kernel` (its line and noise keys
    ``update_keys[k, l]``; pulses into ``pulses[k, l]``) and the bias's SGD step, as
    :meth:`Backend.apply_stochastic_update` does for one chip. A single chip's update is
    serial, so here each core updates chips of its own."""
    for k in prange(active.shape[0]):
        c = active[k]
        loss, hits, inputs, errors = signals_kernel(params[c], layout, alphas[c], feedback[c],
                                                    fb_layout, x[k], y[k], rule, act, periph,
                                                    fb_periph, keys[k], rereads[k], max_parts)
        step = scalar_like(params, lr)
        for l in range(layout.shape[0]):
            w_off, n_out, n_in, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            lo, hi = device_offsets[l], device_offsets[l + 1]
            error = errors[l]
            up, down = numba_devices.stochastic_update_kernel(
                params[c, w_off:w_off + n_out * n_in], inputs[l], error * inverse_alphas[c, l],
                lr, bl, update_keys[k, l, 0], update_keys[k, l, 1], step_up[c, lo:hi],
                step_down[c, lo:hi], w_min[c, lo:hi], w_max[c, lo:hi], stuck[c, lo:hi],
                model_code, ctoc, gamma_up, gamma_down, c_up, c_down, levels,
                device_dw_min)
            pulses[k, l, 0] = up
            pulses[k, l, 1] = down
            total = error[0].copy()  # the batch's sum, row after row (NumPy's axis-0 sum)
            for i in range(1, error.shape[0]):
                total += error[i]
            for j in range(n_out):
                params[c, b_off + j] = params[c, b_off + j] + (-step) * total[j]
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


@functools.lru_cache(maxsize=64)
def _optimizer_constants(config: OptimizerConfig, t: type) -> tuple:
    """The optimizer's code and fixed hyper-parameters in the buffer dtype ``t`` (made once
    per configuration: a step at batch 1 is short enough for their conversion to show)."""
    return (OPTIMIZER_CODES[config.name], t(config.lr), t(config.beta1), t(1 - config.beta1),
            t(config.beta2), t(1 - config.beta2), t(config.eps), t(config.momentum))


def kernel_input(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` C-contiguous in ``dtype``, read-only: a batch as the kernels take it. Numba
    compiles a kernel once per type of its arguments, and read-only arrays (data sets,
    noise sets) are a type of their own: as the kernels only read their batches, every
    batch is passed read-only (a view, no copy), and each kernel is compiled once instead
    of twice (about a minute of a first run's compilation)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


class NumbaBackend(Backend):
    name = "numba"
    device_kernels = numba_devices

    def __init__(self, dtype: str = "float32", threads: int | None = None,
                 deterministic: bool = True):
        """``threads`` limits Numba's threads and the BLAS threads of the matrix products
        (process-wide: set it when several simulations share the cores).

        ``deterministic``: products are computed by tiles or single-threaded BLAS calls in
        blocks split between Numba's threads by shape (:mod:`numba_gemm`), so results do not
        depend on the thread count; otherwise each product is one call to the multithreaded
        BLAS (rounding depends on the thread count; slower for the layers of a typical
        network, ``benchmarks/results/core_step.md``, it can pay for very large ones)."""
        super().__init__(dtype)
        if threads is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self.max_parts = MAX_PARTS if deterministic else 1
        threadpool_limits(1 if deterministic else numba.get_num_threads(), user_api="blas")
        self.blas = ThreadpoolController().select(user_api="blas")

    def uniform(self, key: int, n: int) -> np.ndarray:
        return threaded_draws(np.uint64(key), n, False)

    def normal(self, key: int, n: int) -> np.ndarray:
        return threaded_draws(np.uint64(key), n, True)

    def scaled_draws(self, key, n, gaussian, scale, shift, dtype):
        out = np.empty(n, dtype=dtype)
        threaded_scaled_draws(np.uint64(key), gaussian, float(scale), float(shift), out)
        return out

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
            return (None if config.is_ideal or digital
                    else kernel_scalars(config, chip.dtype, chip.tiles))
        return (scalars(chip.forward_periphery),
                scalars(chip.feedback_periphery, chip.feedback_kind == "regenerated"))

    def logits(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        x = kernel_input(x, chip.dtype)
        periph, _ = self._periphery(chip)
        return logits_kernel(chip.params, chip.layout, chip.alphas_typed, x,
                             chip.activation_code, periph, chip.read_keys(training=False),
                             chip.rereads[1], self.max_parts)

    def _signal_args(self, chip, feedback, x, y, rule_code, training) -> tuple:
        x, y = kernel_input(x, chip.dtype), kernel_input(y, np.int64)
        return (chip.params, chip.layout, chip.alphas_typed, feedback, chip.feedback_layout, x,
                y, int(rule_code), chip.activation_code, *self._periphery(chip),
                chip.read_keys(training), chip.rereads[int(not training)], self.max_parts)

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
        """:func:`optimizer_update_kernel`'s arguments before ``grads``: the code, the
        scalars in the buffer dtype ``t`` (Adam's for the step about to be taken), the
        moments."""
        constants = _optimizer_constants(state.config, t)
        if state.config.name != "adam":  # unused by SGD: spare their conversion
            return (*constants, constants[1], constants[1], state.m, state.v)
        step_size, inverse_sqrt_c2 = state.adam_scalars()
        return (*constants, t(step_size), t(inverse_sqrt_c2), state.m, state.v)

    def optimizer_step(self, state: OptimizerState, grads, out):
        """In chunks on Numba's threads (:func:`optimizer_update_kernel` without the
        update)."""
        no_layers = np.zeros((0, 4), dtype=np.int64)
        optimizer_update_kernel(*self._optimizer_args(state, grads.dtype.type), grads, out,
                                out, no_layers, out[:0], out[:0].reshape(0, 2), False,
                                self.max_parts)
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

    def launch_population_step(self, population, states, active, x, y):
        """All active chips in one call of :func:`population_step_kernel` (parallel over
        chips, each chip's products serial: bit-identical to single-chip steps, see
        :mod:`numba_gemm`), or of :func:`population_stochastic_kernel` for in-array
        (stochastic) updates. BLAS runs single-threaded in the call (the deterministic
        mode's setting anyway). Chips holding differential pairs (:mod:`neurosim.pair`)
        step one by one (:meth:`Backend.launch_population_step`)."""
        chip = population.chips[0]
        if chip.pairs is not None:
            return super().launch_population_step(population, states, active, x, y)
        if chip.update_mode == "stochastic":
            return self._stochastic_population_step(population, states, active, x, y)
        index = np.asarray(active, dtype=np.int64)
        n = index.shape[0]
        m, v = population.moments(states)
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
                      np.zeros(2), *np.zeros(6))  # unused: device_args' types
            pulse_keys = np.zeros((n, chip.n_layers, 2), dtype=np.uint64)
        losses, correct, pulses, rereads = self._population_outputs(chip, n)
        with (nullcontext() if self.max_parts > 1 else self.blas.limit(limits=1)):
            population_step_kernel(
                index, population.params, chip.layout, population.alphas,
                population.inverse_alphas, chip.bounds_typed,
                *self._population_signal_args(population, active, x, y, rereads),
                population.grads, population.deltas,
                *_optimizer_constants(shared_optimizer(states, active), chip.dtype.type),
                scalars[:, 0].astype(chip.dtype),
                scalars[:, 1].astype(chip.dtype), m, v, pulsed, pulse_keys,
                np.float64(chip.devices[0].dw_min if pulsed else 0.0),
                np.int64(chip.config.forward.update.max_pulses), population.device_offsets,
                *device, losses, correct, pulses, min(numba.get_num_threads(), n))
        return self._population_stepped(population, states, active, losses, correct,
                                        pulses if pulsed else None, rereads)

    def _stochastic_population_step(self, population, states, active, x, y):
        """:meth:`launch_population_step` of in-array (stochastic) updates: plain SGD, each chip
        with its optimizer's learning rate (one per call, :func:`shared_optimizer`)."""
        chip = population.chips[0]
        devices = population.devices
        losses, correct, pulses, rereads = self._population_outputs(chip, len(active))
        with (nullcontext() if self.max_parts > 1 else self.blas.limit(limits=1)):
            population_stochastic_kernel(
                np.asarray(active, dtype=np.int64), population.params, chip.layout,
                population.alphas, population.inverse_alphas,
                *self._population_signal_args(population, active, x, y, rereads),
                np.float64(shared_optimizer(states, active).lr),
                np.int64(chip.config.forward.update.bl),
                population.pulse_keys(active, rng.Purpose.PULSE_LINES),
                population.device_offsets, *(devices[name] for name in DEVICE_ARRAYS),
                *numba_devices.device_args(chip.devices[0])[len(DEVICE_ARRAYS):],
                losses, correct, pulses)
        return self._population_stepped(population, states, active, losses, correct, pulses,
                                        rereads)

    def _population_signal_args(self, population, active, x, y, rereads) -> tuple:
        """The population kernels' arguments of the chips' local signals (after the
        stacked parameters and scales): feedback, batches, rule, activation, periphery,
        the active chips' read keys, ``rereads`` (:meth:`_population_rereads`) and serial
        products (``-max_parts``)."""
        chip = population.chips[0]
        return (population.feedback(self), chip.feedback_layout,
                kernel_input(x, chip.dtype), kernel_input(y, np.int64), int(chip.rule.code),
                chip.activation_code, *self._periphery(chip), population.read_keys(active),
                rereads, -self.max_parts)

    @staticmethod
    def _population_outputs(chip: Chip, n: int) -> tuple:
        """The population kernels' outputs for ``n`` chips: summed losses, correct
        predictions, pulses sent per layer (up, down), re-reads of the training step's
        reads (a row of each chip's :attr:`Chip.rereads`)."""
        return (np.empty(n), np.empty(n, dtype=np.int64),
                np.zeros((n, chip.n_layers, 2), dtype=np.int64),
                np.zeros((n, *chip.rereads.shape[1:]), dtype=np.int64))

    @staticmethod
    def _population_stepped(population, states, active, losses, correct, pulses,
                            rereads) -> tuple[np.ndarray, np.ndarray]:
        """After a population kernel: each active chip's programming event and optimizer
        step counted, its pulses (``None``: ideal updates) and re-reads added to its host
        buffers (this backend holds no state elsewhere); the chips' summed losses and
        correct predictions."""
        for k, c in enumerate(active):
            population.chips[c].update_count += 1
            population.chips[c].rereads[0] += rereads[k]
            if pulses is not None:
                population.chips[c]._pulses += pulses[k]
            states[c].step += 1
        return losses, correct
