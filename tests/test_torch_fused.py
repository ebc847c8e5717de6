"""The fused optimizer and update kernel (:mod:`neurosim.backends.torch_fused`): bit for bit
the separate torch operations it replaces, on every optimizer, with and without the ideal
update, in float32 and float64, with shared and per-chip scalars; a population stepped
with it is its chips' single-chip steps. Runs in Triton's interpreter on the CPU (where
triton is installed) and compiled on a CUDA GPU (marked ``cuda``)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from conftest import backend_under_test, make_chip
from test_torch_population import CHIPS, QUICKSTART, assert_same_chips

from neurosim.bench import Workload
from neurosim.config import OptimizerConfig, SimulationConfig, load_experiment
from neurosim.errors import ConfigError, NeurosimError

torch = pytest.importorskip("torch")
from neurosim.backends import torch_fused  # noqa: E402  (needs torch)
from neurosim.backends.torch_backend import TorchBackend  # noqa: E402

OPTIMIZERS = {"adam": OptimizerConfig(name="adam", lr=3e-3),
              "momentum": OptimizerConfig(name="sgd", lr=0.05, momentum=0.9),
              "sgd": OptimizerConfig(name="sgd", lr=0.05)}
PLACES = ["interpreter", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=PLACES)
def device(request, monkeypatch) -> torch.device:
    """Where the kernel runs: Triton's interpreter on CPU tensors, or a GPU."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    if request.param == "cuda":
        backend_under_test("torch-cuda")  # skips without a GPU
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        return torch.device("cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.set_num_threads(1)  # the separate runs' products: bit-identical to the population's
    return torch.device("cpu")


def state(chip, n_chips: int, dtype, device, seed: int = 0) -> dict:
    """Random ``A x n`` parameters (a quarter of them beyond the weight bounds, so the clip
    acts), gradients and moments, and per-chip ``1 / alpha_l``."""
    generator = np.random.default_rng(seed)
    n = chip.params.size
    high = float(chip.bounds[0, 1])
    arrays = {"params": generator.uniform(-1.25 * high, 1.25 * high, (n_chips, n)),
              "grads": generator.standard_normal((n_chips, n)) * 1e-2,
              "m": generator.standard_normal((n_chips, n)) * 1e-2,
              "v": generator.random((n_chips, n)) * 1e-4,
              "inverse_alphas": generator.uniform(0.5, 2.0, (n_chips, chip.n_layers))}
    arrays["grads"][:, :5] = 0.0  # Adam at g = 0 (m and v decaying)
    return {name: torch.as_tensor(array.astype(dtype), device=device)
            for name, array in arrays.items()}


def adam_scalars(n_chips: int, shared: bool, dtype) -> np.ndarray:
    """``-step_size`` and ``1 / sqrt(1 - b2^t)`` at steps 1, 2, ...: one row, or one per
    chip."""
    t = dtype.type
    steps = np.arange(1, 2 if shared else n_chips + 1)
    lr, b1, b2 = 3e-3, 0.9, 0.999
    return np.stack([-(lr / (1 - b1 ** steps)).astype(t),
                     (1 / np.sqrt(1 - b2 ** steps)).astype(t)], axis=1)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("ideal", [True, False], ids=["ideal update", "desired change"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared scalars", "per-chip scalars"])
def test_the_kernel_is_the_separate_operations(device, optimizer, ideal, shared,
                                               ideal_chip_config):
    cfg, dtype = OPTIMIZERS[optimizer], np.dtype("float32")
    chip = make_chip(ideal_chip_config, dims=(37, 23, 5), dtype=dtype.name)
    n_chips = 3
    scalars = adam_scalars(n_chips, shared, dtype)
    separate, fused = (state(chip, n_chips, dtype, device) for _ in range(2))
    backend = TorchBackend(dtype.name, device.type, fused_update="off")
    out = torch.empty_like(separate["grads"])
    operands = ((float(scalars[0, 0]), float(scalars[0, 1])) if shared else
                tuple(torch.as_tensor(scalars[:, k:k + 1].copy(), device=device)
                      for k in range(2)))
    backend._optimize(cfg, dtype.type, separate["m"], separate["v"], separate["grads"], out,
                      *operands)
    if ideal:
        backend._ideal_update(chip, separate["params"], out,
                              list(separate["inverse_alphas"].T[..., None, None]))
    fused_out = torch.full_like(out, np.nan)
    torch_fused.FusedStep(chip, device)(
        cfg, fused["params"], fused["m"], fused["v"], fused["grads"],
        None if ideal else fused_out, torch.as_tensor(scalars, device=device),
        fused["inverse_alphas"] if ideal else None)
    compared = ["params", "m", "v"] if ideal else ["m", "v"]
    for name in compared:
        torch.testing.assert_close(fused[name], separate[name], rtol=0, atol=0, msg=name)
    if ideal:
        assert torch.isnan(fused_out).all()  # the desired change is not written
        bounds = torch.as_tensor(chip.bounds_typed[0], device=device)
        assert (fused["params"] == bounds[0]).any() and (fused["params"] == bounds[1]).any()
    else:
        torch.testing.assert_close(fused_out, out, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@pytest.mark.parametrize("max_pulses", [1, 7])  # 1: an argument Triton makes a constant
def test_the_pulse_count_kernel_is_the_separate_operations(device, max_pulses,
                                                           ideal_chip_config):
    """Each chip's pulse counts (its own rounding stream), directions and per-chip sums of
    every layer, stuck devices left out, and the edges: no change, NaN, changes beyond
    ``max_pulses`` pulses and infinite ones."""
    from neurosim.backends.torch_devices import pulse_counts
    from neurosim.backends.torch_rng import as_int64

    chip = make_chip(ideal_chip_config, dims=(37, 23, 5), dtype="float32")
    n_chips, dw_min = 3, 2e-3
    arrays = state(chip, n_chips, np.float32, device)
    updates = arrays["grads"]
    updates[0, :4] = torch.tensor([float("nan"), float("inf"), -1.0, 0.0])
    generator = np.random.default_rng(1)
    keys = torch.as_tensor(np.array([[[as_int64(int(k)) for k in pair] for pair in layer]
                                     for layer in generator.integers(
                                         0, 2 ** 63, (n_chips, chip.n_layers, 2)) * 2 + 1]),
                           device=device)  # keys above 2**63 too
    step = torch_fused.FusedStep(chip, device)
    counted = torch.zeros((n_chips, chip.n_layers, 2), dtype=torch.int64, device=device)
    for l in range(chip.n_layers):
        w_off, n_out, n_in, _ = (int(v) for v in chip.layout[l])
        n = n_out * n_in
        free = torch.as_tensor(generator.random((n_chips, n)) > 0.1, device=device)
        inverse_alphas = arrays["inverse_alphas"]
        counts, up = step.pulse_counts(updates, l, inverse_alphas, keys, free.reshape(-1),
                                       dw_min, max_pulses, counted)
        dw = updates[:, w_off:w_off + n] * inverse_alphas[:, l:l + 1]
        expected = torch.where(free, pulse_counts(dw, dw_min, max_pulses,
                                                  keys[:, l, 0, None], 0), 0)
        torch.testing.assert_close(counts.long(), expected, rtol=0, atol=0)
        torch.testing.assert_close(up, dw > 0, rtol=0, atol=0)
        assert 0 < int(expected.sum()) and int(expected.max()) == max_pulses
        torch.testing.assert_close(counted[:, l, 0], torch.where(dw > 0, expected, 0).sum(1))
        torch.testing.assert_close(counted[:, l, 1], torch.where(dw > 0, 0, expected).sum(1))


def test_the_clip_keeps_a_nan(device, ideal_chip_config):
    """A NaN weight change gives a NaN weight, as ``torch.clamp`` (not the bound: a GPU's
    plain min/max would drop the NaN)."""
    chip = make_chip(ideal_chip_config, dims=(4, 3, 2), dtype="float32")
    arrays = state(chip, 1, np.float32, device)
    arrays["grads"][0, 0] = float("nan")
    torch_fused.FusedStep(chip, device)(
        OPTIMIZERS["sgd"], arrays["params"], arrays["m"], arrays["v"], arrays["grads"], None,
        torch.zeros((1, 2), dtype=torch.float32, device=device), arrays["inverse_alphas"])
    assert torch.isnan(arrays["params"][0, 0]) and not torch.isnan(arrays["params"][0, 1:]).any()


@pytest.mark.parametrize("chip,optimizer", [("ideal", "adam"), ("ideal", "momentum"),
                                            ("pulsed", "adam"), ("pulsed", "sgd")])
def test_a_fused_population_is_its_chips_stepped_alone(device, chip, optimizer):
    """Steps of the whole population, then of a subset in another order: each chip's
    parameters, moments and pulses are those of its own unfused single-chip steps (on a
    GPU, those of the unfused population: cuBLAS's batched products round as they like)."""
    experiment = load_experiment(QUICKSTART)
    experiment = dataclasses.replace(experiment, optimizer=OPTIMIZERS[optimizer])
    config = CHIPS[chip]()
    reference_way = dict(together=device.type == "cuda")
    population = Workload(experiment, config, TorchBackend("float32", device.type,
                                                           fused_update="on"), 3, 16,
                          together=True)
    reference = Workload(experiment, config, TorchBackend("float32", device.type,
                                                          fused_update="off"), 3, 16,
                         **reference_way)
    assert population.backend.fused_update and not reference.backend.fused_update
    for _ in range(2):
        population.train()
        reference.train()
    assert population.population.resident.fused is not None
    active = [2, 0]
    x, y = population.x[1][active], population.y[1][active]
    population.backend.population_step(population.population, population.states, active, x, y)
    if reference_way["together"]:
        reference.backend.population_step(reference.population, reference.states, active, x, y)
    else:
        for k, c in enumerate(active):
            reference.backend.train_step(reference.chips[c], reference.states[c], x[k], y[k],
                                         reference.grads[c], reference.deltas[c])
    assert_same_chips(population, reference)


def test_auto_fuses_on_a_gpu_only(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the CPU may run it, but auto leaves it
    assert not TorchBackend("float32", "cpu").fused_update
    assert not TorchBackend("float32", "cpu", fused_update="off").fused_update


def test_on_where_it_cannot_run_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    triton = importlib.util.find_spec("triton") is not None
    with pytest.raises(NeurosimError, match="simulation.fused_update = 'on': " + (
            "Triton compiles for CUDA devices, not cpu" if triton else "triton is not")):
        TorchBackend("float32", "cpu", fused_update="on")
    if triton:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        with pytest.raises(NeurosimError, match="in float32, not float64"):
            TorchBackend("float64", "cpu", fused_update="on")


def test_on_with_another_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="fused_update"):
        SimulationConfig(backend="numba", fused_update="on").check("exp.yaml", "simulation")
