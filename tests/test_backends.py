"""Backends: the fast backends (numba, torch) against the numpy reference, and the rules'
identities."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import batch, make_chip

from neurosim.backends.numba_cpu import (
    NumbaBackend,
    chunks_for,
    gradients_kernel,
    logits_kernel,
    optimizer_update_kernel,
    outer_into,
)
from neurosim.backends.numba_gemm import MAX_PARTS
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import OptimizerConfig
from neurosim.optimizers import OptimizerState
from neurosim.rules import RuleCode

RULE_CASES = [(rule, dims) for dims in ((784, 20, 10), (784, 16, 12, 10))
              for rule in ("bp", "fa", "dfa", "sdfa", "drtp")]


def gradients(backend, chip, x, y, rule_code=None):
    out = np.zeros(chip.n_params, dtype=chip.dtype)
    loss, correct = backend.gradients(chip, backend.feedback_buffer(chip), x, y,
                                      chip.rule.code if rule_code is None else rule_code, out)
    return out, loss, correct


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("rule,dims", RULE_CASES)
@pytest.mark.parametrize("batch_size", [1, 33])  # 1 takes the outer-product path
def test_fast_gradients_equal_reference(ideal_chip_config, fast, rule, dims, activation, dtype,
                                        rtol, batch_size):
    chip = make_chip(ideal_chip_config, dims, rule, seed=3, dtype=dtype, activation=activation)
    x, y = batch(batch_size, dtype=dtype)
    ref, ref_loss, ref_correct = gradients(NumpyBackend(dtype), chip, x, y)
    grads, loss, correct = gradients(fast.backend(dtype), chip, x, y)
    scale = np.max(np.abs(ref))
    np.testing.assert_allclose(grads, ref, rtol=rtol, atol=rtol * scale)
    assert loss == pytest.approx(ref_loss, rel=rtol)
    assert correct == ref_correct


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", [OptimizerConfig(name="adam", lr=1e-2),
                                    OptimizerConfig(name="sgd", lr=0.1),
                                    OptimizerConfig(name="sgd", lr=0.1, momentum=0.9)])
def test_fast_optimizer_and_update_equal_reference(ideal_chip_config, fast, config, dtype):
    """Several steps of optimizer + ideal array update: identical parameters (the
    element-wise arithmetic is written in the same operation order)."""
    chips = [make_chip(ideal_chip_config, dtype=dtype) for _ in range(2)]
    backends = [NumpyBackend(dtype), fast.backend(dtype)]
    states = [OptimizerState.create(config, chips[0].n_params, chips[0].dtype) for _ in range(2)]
    generator = np.random.default_rng(1)
    for _ in range(5):
        grads = generator.normal(0, 0.05, chips[0].n_params).astype(dtype)
        for chip, backend, state in zip(chips, backends, states):
            deltas = np.zeros_like(grads)
            backend.optimizer_step(state, grads, deltas)
            backend.apply_ideal_update(chip, deltas)
    np.testing.assert_array_equal(chips[0].params, chips[1].params)
    np.testing.assert_array_equal(states[0].m, states[1].m)
    np.testing.assert_array_equal(states[0].v, states[1].v)
    assert states[0].step == states[1].step == 5


@pytest.mark.parametrize("config", [OptimizerConfig(name="adam", lr=1e-2),
                                    OptimizerConfig(name="sgd", lr=0.1, momentum=0.9)])
@pytest.mark.parametrize("rule", ["fa", "dfa", "bp", "sdfa", "drtp"])
@pytest.mark.parametrize("batch_size", [1, 33])
def test_numba_fused_train_step_is_the_step_by_parts(ideal_chip_config, rule, config,
                                                     batch_size):
    """Numba's one-call training step (ideal update) is :meth:`Backend.train_step`'s
    gradients, optimizer and update, bit for bit."""
    chips = [make_chip(ideal_chip_config, (784, 16, 12, 10), rule, seed=2) for _ in range(2)]
    backend = NumbaBackend(chips[0].dtype.name)
    states = [OptimizerState.create(config, chips[0].n_params, chips[0].dtype) for _ in range(2)]
    buffers = [(np.zeros(c.n_params, dtype=c.dtype), np.zeros(c.n_params, dtype=c.dtype))
               for c in chips]
    for step in range(4):
        x, y = batch(batch_size, seed=step, dtype=chips[0].dtype.name)
        fused = backend.train_step(chips[0], states[0], x, y, *buffers[0])
        parts = super(NumbaBackend, backend).train_step(chips[1], states[1], x, y, *buffers[1])
        assert fused == parts
    np.testing.assert_array_equal(chips[0].params, chips[1].params)
    for a, b in zip((states[0].m, states[0].v, *buffers[0]), (states[1].m, states[1].v,
                                                              *buffers[1])):
        np.testing.assert_array_equal(a, b)
    assert (states[0].step, chips[0].update_count) == (states[1].step, chips[1].update_count)


@pytest.mark.parametrize("config", [OptimizerConfig(name="adam", lr=1e-2),
                                    OptimizerConfig(name="sgd", lr=0.1),
                                    OptimizerConfig(name="sgd", lr=0.1, momentum=0.9)])
def test_numba_fused_optimizer_update_in_chunks_equals_reference(ideal_chip_config, config):
    """The fused optimizer + update pass, cut into chunks run in parallel (a chip large
    enough for several), serially, or with one thread, equals the reference's optimizer
    step followed by its update, bit for bit; so does the optimizer alone."""
    dims = (784, 100, 10)
    chip = make_chip(ideal_chip_config, dims, "fa", seed=4)
    assert chunks_for(chip.n_params, MAX_PARTS) > 1  # the parallel path is exercised
    generator = np.random.default_rng(2)
    grads = generator.normal(0, 0.05, chip.n_params).astype(chip.dtype)
    chip.params[:] = generator.uniform(-1.05, 1.05, chip.n_params)  # some get clipped
    reference = make_chip(ideal_chip_config, dims, "fa", seed=4)
    reference.params[:] = chip.params
    state = OptimizerState.create(config, chip.n_params, chip.dtype)
    state.m[:] = generator.normal(0, 0.01, state.m.shape)
    state.v[:] = generator.uniform(0, 1e-3, state.v.shape)
    ref_state = OptimizerState(config, 3, state.m.copy(), state.v.copy())
    state.step = 3
    ref_deltas = np.zeros_like(grads)
    NumpyBackend(chip.dtype.name).optimizer_step(ref_state, grads, ref_deltas)
    NumpyBackend(chip.dtype.name).apply_ideal_update(reference, ref_deltas)

    backend = NumbaBackend(chip.dtype.name)
    args = backend._optimizer_args(state, chip.dtype.type)
    previous = numba.get_num_threads()
    try:
        for threads, max_parts in ((previous, MAX_PARTS), (previous, -MAX_PARTS),
                                   (1, MAX_PARTS)):
            numba.set_num_threads(threads)
            params, m, v = chip.params.copy(), state.m.copy(), state.v.copy()
            deltas = np.zeros_like(grads)
            optimizer_update_kernel(*args[:-2], m, v, grads, deltas, params, chip.layout,
                                    chip.inverse_alphas_typed, chip.bounds_typed, True,
                                    max_parts)
            for got, want in ((params, reference.params), (deltas, ref_deltas),
                              (m, ref_state.m), (v, ref_state.v)):
                np.testing.assert_array_equal(got, want)
    finally:
        numba.set_num_threads(previous)
    deltas = np.zeros_like(grads)
    backend.optimizer_step(state, grads, deltas)  # the optimizer alone, in chunks
    np.testing.assert_array_equal(deltas, ref_deltas)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_batch_one_outer_product_in_blocks_is_exact(dtype):
    """Batch 1's weight gradient ``d h^T``, cut into row blocks on Numba's threads (a matrix
    large enough for several), serially, or with one thread: every element is the one
    product of the reference, bit for bit."""
    generator = np.random.default_rng(5)
    d = generator.standard_normal(100).astype(dtype)
    h = generator.standard_normal(784).astype(dtype)
    assert chunks_for(d.size * h.size, MAX_PARTS) > 1
    previous = numba.get_num_threads()
    try:
        for threads, max_parts in ((previous, MAX_PARTS), (previous, -MAX_PARTS),
                                   (1, MAX_PARTS)):
            numba.set_num_threads(threads)
            g = np.full((100, 784), np.nan, dtype=dtype)
            outer_into(d, h, g, max_parts)
            np.testing.assert_array_equal(g, np.outer(d, h))
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("dims", [(784, 20, 10), (784, 16, 12, 10)])
def test_fa_with_transposed_forward_weights_equals_bp(ideal_chip_config, any_backend, dims):
    chip = make_chip(ideal_chip_config, dims, "fa", seed=5)
    for index, spec in enumerate(chip.feedback_specs):
        if spec is not None:
            offset = chip.feedback_layout[index, 0]
            chip.feedback[offset:offset + spec.size] = chip.effective_weights()[index].T.ravel()
    backend = any_backend.backend("float64")
    x, y = batch(17)
    fa, _, _ = gradients(backend, chip, x, y, RuleCode.FA)
    bp, _, _ = gradients(backend, chip, x, y, RuleCode.BP)
    np.testing.assert_allclose(fa, bp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_bp_matches_finite_differences(ideal_chip_config, any_backend, activation):
    """dLoss/dW from BP equals central differences of the mean cross-entropy."""
    chip = make_chip(ideal_chip_config, (784, 12, 9, 10), "bp", seed=2, activation=activation)
    backend = any_backend.backend("float64")
    x, y = batch(8)
    grads, _, _ = gradients(backend, chip, x, y)
    generator = np.random.default_rng(0)
    probe = np.zeros_like(grads)
    for index in generator.choice(chip.n_params, 60, replace=False):
        h = 1e-6
        layer = int(np.searchsorted(chip.layout[:, 0], index, side="right") - 1)
        w_off, n_out, n_in, _ = chip.layout[layer]
        # Weights are stored in array units: W = alpha * w, so perturb w by h / alpha.
        step = h / chip.alphas[layer] if index < w_off + n_out * n_in else h
        losses = []
        for sign in (1, -1):
            chip.params[index] += sign * step
            losses.append(backend.gradients(chip, backend.feedback_buffer(chip), x, y,
                                            RuleCode.BP, probe)[0] / len(y))
            chip.params[index] -= sign * step
        numeric = (losses[0] - losses[1]) / (2 * h)
        assert grads[index] == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_rules_differ_on_hidden_layers_only(ideal_chip_config):
    """The output layer gets the same gradient under every rule; hidden layers do not."""
    x, y = batch(16)
    backend = NumpyBackend("float64")
    grads = {}
    for rule in ("bp", "fa", "dfa", "sdfa", "drtp"):
        chip = make_chip(ideal_chip_config, (784, 16, 12, 10), rule, seed=7)
        grads[rule], _, _ = gradients(backend, chip, x, y)
    w_off, n_out, n_in, _ = chip.layout[-1]
    last = slice(w_off, None)
    first = slice(0, chip.layout[0, 1] * chip.layout[0, 2])
    for rule in ("fa", "dfa", "sdfa", "drtp"):
        np.testing.assert_allclose(grads[rule][last], grads["bp"][last])
    for rule, other in (("fa", "bp"), ("dfa", "fa"), ("sdfa", "dfa"), ("drtp", "sdfa")):
        assert not np.allclose(grads[rule][first], grads[other][first])


@pytest.mark.parametrize("rule", ["sdfa", "drtp"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_sign_and_target_rules_follow_their_definition(ideal_chip_config, rule, activation):
    """The reference's SDFA and DRTP gradients, written out from the rules' equations on a
    one-hidden-layer chip: hidden ``delta = (s B_1^T) * f'(a_1) / batch`` with ``s = sign(e)``
    (SDFA) or the one-hot target (DRTP); the output layer learns from ``e`` as under BP."""
    chip = make_chip(ideal_chip_config, (784, 20, 10), rule, seed=5, activation=activation)
    x, y = batch(17, seed=2)
    W1, W2 = (chip.effective_weights()[l] for l in (0, 1))
    a1 = x @ W1.T + chip.bias(0)
    h1 = np.maximum(a1, 0) if activation == "relu" else np.tanh(a1)
    logits = h1 @ W2.T + chip.bias(1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(10)[y]
    e = p - onehot
    signal = np.sign(e) if rule == "sdfa" else onehot
    derivative = (a1 > 0) if activation == "relu" else 1 - h1 * h1
    delta1 = (signal @ chip.feedback_matrix(0).T) * derivative / len(y)
    grads, _, _ = gradients(NumpyBackend("float64"), chip, x, y)
    w_off, n_out, n_in, b_off = chip.layout[0]
    np.testing.assert_allclose(grads[w_off:w_off + n_out * n_in].reshape(n_out, n_in),
                               delta1.T @ x, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[b_off:b_off + n_out], delta1.sum(axis=0), rtol=1e-10,
                               atol=1e-14)
    bp, _, _ = gradients(NumpyBackend("float64"), chip, x, y, RuleCode.BP)
    last = slice(chip.layout[1, 0], None)
    np.testing.assert_array_equal(grads[last], bp[last])


def test_target_projection_needs_no_output_error(ideal_chip_config, any_backend):
    """DRTP's hidden layers learn from the label alone: changing the output layer (and so
    every error) leaves their gradients unchanged, which DFA's do not."""
    x, y = batch(16, seed=4)
    backend = any_backend.backend("float64")
    hidden = slice(0, int(make_chip(ideal_chip_config, (784, 16, 12, 10)).layout[2, 0]))
    for rule, unchanged in (("drtp", True), ("dfa", False)):
        chip = make_chip(ideal_chip_config, (784, 16, 12, 10), rule, seed=7)
        before, _, _ = gradients(backend, chip, x, y)
        chip.weights(2)[:] = -chip.weights(2)
        chip.bias(2)[:] += 0.5
        after, _, _ = gradients(backend, chip, x, y)
        assert np.array_equal(after[hidden], before[hidden]) == unchanged
        assert not np.array_equal(after[hidden.stop:], before[hidden.stop:])


@pytest.mark.parametrize("rule", ["fa", "dfa", "sdfa", "drtp"])
@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_regenerated_feedback_equals_stored(ideal_chip_config, fast, rule, distribution):
    """A regenerated array re-draws exactly the matrix a stored one was programmed with."""
    stored = make_chip(ideal_chip_config, (784, 16, 12, 10), rule, distribution=distribution)
    regenerated = make_chip(ideal_chip_config, (784, 16, 12, 10), rule,
                            feedback_kind="regenerated", distribution=distribution)
    assert not regenerated.feedback.any()  # nothing is stored
    for backend in (NumpyBackend("float64"), fast.backend("float64")):
        np.testing.assert_allclose(backend.feedback_buffer(regenerated), stored.feedback,
                                   rtol=1e-15, atol=0)
    x, y = batch(8)
    np.testing.assert_allclose(gradients(fast.backend("float64"), regenerated, x, y)[0],
                               gradients(NumpyBackend("float64"), stored, x, y)[0], rtol=1e-12,
                               atol=1e-15)


def test_ideal_update_clips_to_bounds(ideal_chip_config, fast):
    chip = make_chip(ideal_chip_config, (784, 8, 10))
    deltas = np.full(chip.n_params, 1e3)
    for backend in (NumpyBackend("float64"), fast.backend("float64")):
        backend.apply_ideal_update(chip, deltas)
        for layer in range(chip.n_layers):
            assert np.all(chip.weights(layer) == chip.bounds[layer, 1])
        backend.apply_ideal_update(chip, -3 * deltas)
        for layer in range(chip.n_layers):
            assert np.all(chip.weights(layer) == chip.bounds[layer, 0])


def test_threads_limit_blas_and_numba():
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits():  # restore the process's limits afterwards
        previous = numba.get_num_threads()
        NumbaBackend("float32", threads=1)
        assert numba.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info()
                   if pool["user_api"] == "blas")
        numba.set_num_threads(previous)


@pytest.mark.parametrize("rule,dims", RULE_CASES)
def test_local_signals_agree_and_give_the_gradient(ideal_chip_config, fast, rule, dims):
    chip = make_chip(ideal_chip_config, dims, rule, seed=4)
    x, y = batch(9)
    ref, got = (backend.local_signals(chip, backend.feedback_buffer(chip), x, y, chip.rule.code)
                for backend in (NumpyBackend("float64"), fast.backend("float64")))
    assert got[0] == pytest.approx(ref[0], rel=1e-12) and got[1] == ref[1]
    for a, b in zip(ref[2] + ref[3], got[2] + got[3]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    grads, _, _ = gradients(NumpyBackend("float64"), chip, x, y)
    for l, (h, delta) in enumerate(zip(ref[2], ref[3])):
        w_off, n_out, n_in, _ = chip.layout[l]
        np.testing.assert_allclose(grads[w_off:w_off + n_out * n_in], (delta.T @ h).ravel())


def test_read_only_and_writable_batches_share_one_compiled_kernel(ideal_chip_config):
    """Data and noise sets are read-only, gathered batches writable; Numba compiles a kernel
    once per argument type, so the backend passes every batch read-only (a first run's
    compilation took a minute longer when both kinds reached the kernels)."""
    chip = make_chip(ideal_chip_config, dims=(784, 12, 10))
    backend = NumbaBackend("float64")
    x, y = batch(8)
    frozen_x, frozen_y = x.copy(), y.copy()
    frozen_x.flags.writeable = frozen_y.flags.writeable = False
    out = np.zeros(chip.n_params)
    backend.logits(chip, x)
    backend.gradients(chip, backend.feedback_buffer(chip), x, y, RuleCode.FA, out)
    compiled = len(logits_kernel.signatures), len(gradients_kernel.signatures)
    np.testing.assert_array_equal(backend.logits(chip, frozen_x), backend.logits(chip, x))
    backend.gradients(chip, backend.feedback_buffer(chip), frozen_x, frozen_y, RuleCode.FA, out)
    assert (len(logits_kernel.signatures), len(gradients_kernel.signatures)) == compiled
    assert x.flags.writeable  # the caller's array is left as it was


def test_target_projection_alignment_is_measured_against_minus_b(ideal_chip_config):
    """DRTP's signal ``B y`` stands in for ``B (-e)``: its angles are taken against ``-B``.
    A DFA chip of the same seed holds the same forward and feedback matrices, so every
    DRTP angle is 180° minus DFA's, layer and neurons alike."""
    from neurosim import evaluation

    dfa, drtp = (make_chip(ideal_chip_config, (784, 16, 12, 10), rule, seed=3)
                 for rule in ("dfa", "drtp"))
    np.testing.assert_array_equal(dfa.params, drtp.params)
    np.testing.assert_array_equal(dfa.feedback, drtp.feedback)
    a, b = evaluation.alignment(dfa), evaluation.alignment(drtp)
    assert set(a["alignment_deg"]) == {"1", "2"}
    for layer, angle in a["alignment_deg"].items():
        assert b["alignment_deg"][layer] == pytest.approx(180 - angle, abs=1e-9)
        assert b["neuron_alignment_mean_deg"][layer] == pytest.approx(
            180 - a["neuron_alignment_mean_deg"][layer], abs=1e-9)
