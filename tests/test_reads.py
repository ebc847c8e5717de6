"""Array reads through the periphery inside the simulator: forward reads, BP's transposed
read and feedback reads, their noise keys, feedback drift, inference drift, and results
that do not depend on the thread count."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest
from conftest import batch, interrupted_then_resumed, make_chip
from test_train import metric_records, spec_for

from neurosim import evaluation, periphery
from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import ChipConfig, DeviceConfig, OptimizerConfig, TileConfig
from neurosim.errors import ConfigError
from neurosim.optimizers import OptimizerState
from neurosim.periphery import PeripheryConfig
from neurosim.rules import RuleCode
from neurosim.schema import build
from neurosim.train import run_spec

NOISY = PeripheryConfig(w_noise=0.05, out_noise=0.01, dac_bound="managed")
QUANTIZED = PeripheryConfig(dac_bits=8, dac_bound="managed", adc_bits=8, adc_bound="managed",
                            w_noise=0.02)


def with_periphery(config: ChipConfig, forward=PeripheryConfig(), feedback=PeripheryConfig(),
                   **feedback_fields) -> ChipConfig:
    return dataclasses.replace(
        config, forward=dataclasses.replace(config.forward, periphery=forward),
        feedback=dataclasses.replace(config.feedback, periphery=feedback, **feedback_fields))


@pytest.mark.parametrize("tiles", [(256, 256), (100, 8)], ids=str)
@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa", "drtp"])
@pytest.mark.parametrize("config,exact", [(NOISY, True), (QUANTIZED, False)])
def test_fast_reads_equal_the_reference(ideal_chip_config, fast, rule, config, exact, tiles):
    """Same keys, same draws: the fast pass (Numba's fused one, torch's) equals the
    reference pass that calls neurosim.periphery on every read (noise only: to rounding of
    the float64 products; quantized: a product rounding differently may move a value by one
    ADC step), the arrays cut into the chip's tiles (256: the first layer's 784 inputs in 4
    row tiles; 100 x 8: row and column tiles in every array, BP's transposed reads too)."""
    chip_config = dataclasses.replace(with_periphery(ideal_chip_config, config, config),
                                      tiles=TileConfig(*tiles))
    x, y = batch(16)
    results = []
    for backend in (NumpyBackend("float64"), fast.backend("float64")):
        chip = make_chip(chip_config, (784, 30, 20, 10), rule)
        out = np.zeros(chip.n_params)
        loss, _ = backend.gradients(chip, backend.feedback_buffer(chip), x, y, chip.rule.code,
                                    out, training=True)
        results.append((loss, out))
    (loss_a, a), (loss_b, b) = results
    if exact:
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
        assert loss_b == pytest.approx(loss_a, rel=1e-12)
    else:
        close = np.isclose(b, a, rtol=1e-6, atol=1e-9)
        assert close.mean() > 0.9
        assert loss_b == pytest.approx(loss_a, rel=1e-2)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa", "drtp"])
def test_backward_reads_see_each_samples_error(ideal_chip_config, any_backend, rule):
    """The batch mean's 1/batch is digital, after the reads: with converters of a fixed
    range and no noise (deterministic reads), a batch's gradient is the mean of its
    samples' gradients. Errors divided by the batch before the reads would meet the same
    DAC and ADC grids 8x smaller and be rounded differently (mostly away)."""
    fixed = PeripheryConfig(dac_bits=7, dac_range=1.0, adc_bits=6, adc_range=2.0)
    chip_config = with_periphery(ideal_chip_config, fixed, fixed)
    x, y = batch(8)
    backend = any_backend.backend("float64")
    chip = make_chip(chip_config, (784, 30, 20, 10), rule)
    feedback = backend.feedback_buffer(chip)
    whole = np.zeros(chip.n_params)
    backend.gradients(chip, feedback, x, y, chip.rule.code, whole)
    each = np.zeros((len(y), chip.n_params))
    for b in range(len(y)):
        backend.gradients(chip, feedback, x[b:b + 1], y[b:b + 1], chip.rule.code, each[b])
    np.testing.assert_allclose(whole, each.mean(axis=0), rtol=1e-9, atol=1e-12)
    w_off, n_out, n_in, _ = chip.layout[0]
    assert np.count_nonzero(whole[w_off:w_off + n_out * n_in]) > n_out * n_in // 4


def test_the_true_bp_gradient_reads_exactly(ideal_chip_config, any_backend):
    """The update-vs-BP angle's reference is the exact BP gradient of the weights the chip
    holds: on a chip with noisy, quantizing reads, evaluation.gradients(exact=True) is BP
    of the same weights on a chip that reads exactly; the periphery is back afterwards,
    so BP's own gradient on the noisy chip is at a small, nonzero angle to it."""
    backend = any_backend.backend("float64")
    chip = make_chip(with_periphery(ideal_chip_config, QUANTIZED, QUANTIZED), (784, 30, 10),
                     "bp")
    exact_chip = make_chip(ideal_chip_config, (784, 30, 10), "bp")
    np.testing.assert_array_equal(chip.params, exact_chip.params)
    x, y = batch(32)
    exact = evaluation.gradients(chip, backend, x, y, RuleCode.BP, exact=True)
    np.testing.assert_array_equal(exact, evaluation.gradients(exact_chip, backend, x, y,
                                                              RuleCode.BP))
    noisy = evaluation.gradients(chip, backend, x, y, RuleCode.BP)
    assert chip.forward_periphery == QUANTIZED and not chip.ideal_reads
    angles = evaluation.update_vs_backprop(chip, noisy, exact)["update_vs_bp_deg"]
    assert all(0 < angle < 30 for angle in angles.values()), angles


def test_each_read_kind_goes_through_its_periphery(ideal_chip_config):
    """Forward noise changes the loss; under BP the forward periphery also changes the
    backward pass; under FA only the feedback periphery does."""
    x, y = batch(8)
    backend = NumpyBackend("float64")

    def grads(rule, forward=PeripheryConfig(), feedback=PeripheryConfig()):
        chip = make_chip(with_periphery(ideal_chip_config, forward, feedback), rule=rule)
        out = np.zeros(chip.n_params)
        loss, _ = backend.gradients(chip, backend.feedback_buffer(chip), x, y, chip.rule.code,
                                    out, training=True)
        return loss, out, chip

    ideal_loss, ideal_fa, chip = grads("fa")
    w1 = slice(0, chip.layout[0, 1] * chip.layout[0, 2])
    noisy_loss, _, _ = grads("fa", forward=NOISY)
    assert noisy_loss != ideal_loss
    # FA: feedback read noise moves the hidden layer's gradient, not the loss
    fb_loss, fb_grads, _ = grads("fa", feedback=PeripheryConfig(out_noise=0.05))
    assert fb_loss == ideal_loss
    assert not np.array_equal(fb_grads[w1], ideal_fa[w1])
    # BP: its backward pass is a transposed read of the forward array; the feedback
    # periphery is unused
    _, bp_ideal, _ = grads("bp")
    _, bp_fb, _ = grads("bp", feedback=PeripheryConfig(out_noise=0.05))
    assert np.array_equal(bp_fb, bp_ideal)


def test_transposed_read_model_is_applied_to_bp(ideal_chip_config):
    """The BP backward signal of the last layer equals periphery.transposed_read of its
    array with the training key, reading each sample's error (the returned errors are
    divided by the batch size after the reads; the reference is the specification), the
    10 errors driving 3 tiles of 4 columns."""
    config = dataclasses.replace(
        with_periphery(ideal_chip_config, PeripheryConfig(out_noise=0.1, adc_bits=6)),
        tiles=TileConfig(rows=300, cols=4))
    chip = make_chip(config, (784, 12, 10), "bp")
    x, y = batch(4)
    backend = NumpyBackend("float64")
    keys = chip.read_keys(training=True)
    _, _, _, deltas = backend.local_signals(chip, chip.feedback, x, y, RuleCode.BP,
                                            training=True)
    pre, _ = backend.forward_layers(chip, x, keys)
    signal = chip.alphas_typed[1] * periphery.transposed_read(
        chip.weights(1), deltas[1] * len(y), config.forward.periphery, int(keys[1, 1]),
        tiles=(300, 4))
    np.testing.assert_array_equal(deltas[0], signal * (pre[0] > 0) / len(y))


def test_measurement_reads_are_redrawn_and_do_not_touch_training_noise(ideal_chip_config,
                                                                       fast):
    chip = make_chip(with_periphery(ideal_chip_config, NOISY))
    backend = fast.backend("float64")
    x, _ = batch(32)
    first, second = backend.logits(chip, x), backend.logits(chip, x)
    assert not np.array_equal(first, second)  # noise redrawn on every read
    assert chip.measurement_reads == 2
    train_keys = chip.read_keys(training=True)
    backend.logits(chip, x)
    np.testing.assert_array_equal(chip.read_keys(training=True), train_keys)
    ideal = make_chip(ideal_chip_config)
    np.testing.assert_array_equal(backend.logits(ideal, x), backend.logits(ideal, x))


def test_regenerated_feedback_refuses_a_feedback_periphery():
    with pytest.raises(ConfigError, match="feedback.kind"):
        build(ChipConfig, {"name": "x", "feedback": {"kind": "regenerated",
                                                     "periphery": {"adc_bits": 6}}}, "chip.yaml")


def test_stored_feedback_drifts_on_the_chip_clock(ideal_chip_config, fast):
    config = with_periphery(ideal_chip_config, drift_nu=0.1, drift_nu_dtod=0.02)
    chip = make_chip(config)
    backend = fast.backend("float64")
    np.testing.assert_array_equal(backend.feedback_buffer(chip), chip.feedback)  # at t0
    chip.update_count = 5000
    t = config.feedback.drift_t0_s + 5000 * config.step_time_s
    expected = chip.feedback * (t / config.feedback.drift_t0_s) ** -chip.feedback_nu
    np.testing.assert_allclose(backend.feedback_buffer(chip), expected, rtol=1e-12)
    assert np.all(np.abs(expected) <= np.abs(chip.feedback))  # drift only decays
    assert chip.feedback_nu.std() > 0  # device-to-device spread of nu
    # alignment metrics see the feedback the chip applies
    np.testing.assert_allclose(chip.feedback_matrix(1).ravel(), expected[:200], rtol=1e-12)


@pytest.mark.parametrize("rule", ["sdfa", "drtp"])
@pytest.mark.parametrize("dac_bound", ["fixed", "managed"])
def test_sign_and_target_signals_pass_a_two_bit_dac_exactly(ideal_chip_config, any_backend,
                                                            rule, dac_bound):
    """SDFA's ternary and DRTP's binary feedback inputs lie on a 2-bit DAC's grid {-1, 0, 1}
    (fixed range 1, or managed: each sample's abs-max is 1): the gradients equal those of an
    ideal DAC, while DFA's real-valued errors are rounded by the same DAC."""
    two_bits = PeripheryConfig(dac_bits=2, dac_range=1.0, dac_bound=dac_bound)
    x, y = batch(8)
    backend = any_backend.backend("float64")

    def grads(rule, feedback_periphery):
        chip = make_chip(with_periphery(ideal_chip_config, PeripheryConfig(),
                                        feedback_periphery), (784, 30, 20, 10), rule)
        out = np.zeros(chip.n_params)
        backend.gradients(chip, backend.feedback_buffer(chip), x, y, chip.rule.code, out)
        return out

    np.testing.assert_array_equal(grads(rule, two_bits), grads(rule, PeripheryConfig()))
    assert not np.allclose(grads("dfa", two_bits), grads("dfa", PeripheryConfig()))


@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_drifted_feedback_reaches_the_backward_pass(ideal_chip_config, fast, rule):
    """Backend.feedback_buffer hands every backend the drifted cells (chip side, NumPy):
    the fast backward pass equals the reference's and differs from the undrifted one."""
    config = with_periphery(ideal_chip_config, PeripheryConfig(out_noise=0.02),
                            PeripheryConfig(w_noise=0.05), drift_nu=0.1, drift_nu_dtod=0.02)
    chip = make_chip(config, (784, 16, 12, 10), rule)
    chip.update_count = 5000
    x, y = batch(8)

    def grads(backend, feedback):
        out = np.zeros(chip.n_params)
        backend.gradients(chip, feedback, x, y, chip.rule.code, out, training=True)
        return out

    reference, backend = NumpyBackend("float64"), fast.backend("float64")
    drifted = grads(reference, reference.feedback_buffer(chip))
    np.testing.assert_allclose(grads(backend, backend.feedback_buffer(chip)), drifted,
                               rtol=1e-9, atol=1e-12)
    w1 = slice(0, chip.layout[0, 1] * chip.layout[0, 2])
    assert not np.allclose(drifted[w1], grads(reference, chip.feedback)[w1])


def test_inference_drift_lowers_weights_and_restores_the_chip(ideal_chip_config):
    device = dataclasses.replace(ideal_chip_config.forward.device, drift_nu=0.2)
    config = dataclasses.replace(ideal_chip_config, forward=dataclasses.replace(
        ideal_chip_config.forward, device=device))
    chip = make_chip(config, (784, 20, 10))
    backend = NumpyBackend("float64")
    x, y = batch(64)
    before = chip.params.copy()
    result = evaluation.drift_accuracy(chip, backend, x, y, (1.0, 20.0, 1e8))
    np.testing.assert_array_equal(chip.params, before)
    plain = evaluation.loss_and_accuracy(chip, backend, x, y)["accuracy"]
    # before t0 and at t0 the weights read as programmed
    assert result["drift_accuracy"]["1"] == plain == result["drift_accuracy"]["20"]
    assert set(result["drift_accuracy"]) == {"1", "20", "1e+08"}


def train_params(chip_config, mode: str, threads: int, steps: int = 12) -> np.ndarray:
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        backend = NumbaBackend("float32")
        chip = make_chip(chip_config, (784, 100, 10), dtype="float32")
        state = OptimizerState.create(OptimizerConfig(name="sgd", lr=0.05), chip.n_params,
                                      chip.dtype)
        grads = np.zeros(chip.n_params, dtype=np.float32)
        deltas = np.zeros_like(grads)
        for step in range(steps):
            x, y = batch(64, seed=step, dtype="float32")
            feedback = backend.feedback_buffer(chip)
            if mode == "stochastic":
                _, _, inputs, errors = backend.local_signals(chip, feedback, x, y,
                                                             chip.rule.code, training=True)
                backend.apply_stochastic_update(chip, state, inputs, errors)
            else:
                backend.gradients(chip, feedback, x, y, chip.rule.code, grads, training=True)
                backend.update(chip, state, grads, deltas)
        return chip.params.copy()
    finally:
        numba.set_num_threads(previous)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("mode", ["ideal", "pulsed", "stochastic"])
def test_same_seed_gives_bit_identical_weights_with_1_and_2_threads(ideal_chip_config, mode):
    device = DeviceConfig(model="constant_step", dw_min_ctoc=0.3, levels=200) \
        if mode != "ideal" else DeviceConfig()
    forward = dataclasses.replace(ideal_chip_config.forward, device=device,
                                  update=dataclasses.replace(ideal_chip_config.forward.update,
                                                             mode=mode),
                                  periphery=NOISY)
    config = dataclasses.replace(ideal_chip_config, forward=forward)
    one, two = train_params(config, mode, 1), train_params(config, mode, 2)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, make_chip(config, (784, 100, 10), dtype="float32").params)


def test_noisy_reads_resume_to_the_identical_result(tmp_path, monkeypatch):
    spec = spec_for(train__checkpoint_every=1)
    chip = with_periphery(spec.chip, NOISY, PeripheryConfig(out_noise=0.02), drift_nu=0.05)
    spec = dataclasses.replace(spec, chip=chip)
    reference = run_spec(spec, tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec, tmp_path / "cut", 75)
    assert metric_records(tmp_path / "cut") == metric_records(tmp_path / "whole")
    assert resumed["final"] == reference["final"]


def test_non_deterministic_products_still_compute_the_pass(ideal_chip_config):
    """simulation.deterministic: false (one multithreaded BLAS call per product) computes the
    same pass to rounding."""
    x, y = batch(64)
    results = []
    for backend in (NumpyBackend("float64"), NumbaBackend("float64", deterministic=False),
                    NumbaBackend("float64")):
        chip = make_chip(with_periphery(ideal_chip_config, NOISY), (784, 100, 10))
        out = np.zeros(chip.n_params)
        backend.gradients(chip, backend.feedback_buffer(chip), x, y, chip.rule.code, out,
                          training=True)
        results.append(out)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-9, atol=1e-12)
