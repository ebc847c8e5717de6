"""The torch backend's own pieces: its counter-based generator against neurosim.rng, its
training step against the specification's with NumPy's library kernels, and how it is
asked for (config, missing torch, missing GPU). Its kernels are compared with the numpy
reference by the shared suites (the ``fast`` fixture of conftest.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import backend_under_test, batch, make_chip
from test_pulsed_training import pulsed_chip, stochastic_chip

from neurosim import rng
from neurosim.backends import create_backend
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.cli import main
from neurosim.config import OptimizerConfig, SimulationConfig, TileConfig
from neurosim.errors import NeurosimError
from neurosim.optimizers import OptimizerState
from neurosim.periphery import PeripheryConfig

KEYS = [0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 63 + 1, 2 ** 64 - 1, rng.GOLDEN,
        rng.stream_key(5, 7, 1, rng.Purpose.PULSE_NOISE),
        *(int(k) for k in np.random.default_rng(0).integers(0, 2 ** 64 - 1, 40,
                                                              dtype=np.uint64))]
TORCH_DEVICES = ["torch", pytest.param("torch-cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("name", TORCH_DEVICES)
def test_draws_equal_the_numpy_streams_bit_for_bit(name):
    """Uniforms by stream and by index (keys >= 2**63 included, indices up to 2**62) are
    NumPy's bits on every device; normals too on the CPU, and to a few ulp of CUDA's
    log1p and cos on a GPU."""
    under_test = backend_under_test(name)
    device = under_test.device
    import torch

    from neurosim.backends import torch_rng

    index = np.array([0, 1, 999, 2 ** 31 + 5, 2 ** 40, 2 ** 62 - 1], dtype=np.int64)
    for key in KEYS:
        np.testing.assert_array_equal(torch_rng.uniform(key, 3000, device).cpu().numpy(),
                                      rng.uniform(key, 3000))
        np.testing.assert_array_equal(
            torch_rng.uniform_at(key, torch.as_tensor(index, device=device)).cpu().numpy(),
            rng.uniform_at(key, index))
        normals = torch_rng.normal(key, 3000, device).cpu().numpy()
        at = torch_rng.normal_at(key, torch.as_tensor(index[:-1], device=device)).cpu().numpy()
        if under_test.exact_libm:
            np.testing.assert_array_equal(normals, rng.normal(key, 3000))
            np.testing.assert_array_equal(at, rng.normal_at(key, index[:-1]))
        else:
            np.testing.assert_allclose(normals, rng.normal(key, 3000), rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(at, rng.normal_at(key, index[:-1]), rtol=1e-14,
                                       atol=1e-15)


@pytest.mark.parametrize("name", TORCH_DEVICES)
def test_backend_draws_are_numpy_arrays_of_the_streams(name):
    backend = backend_under_test(name).backend("float32")
    key = rng.stream_key(11, 5, 2, rng.Purpose.FEEDBACK)
    uniforms = backend.uniform(key, 5000)
    assert isinstance(uniforms, np.ndarray) and uniforms.dtype == np.float64
    np.testing.assert_array_equal(uniforms, rng.uniform(key, 5000))
    np.testing.assert_allclose(backend.normal(key, 5000), rng.normal(key, 5000), rtol=1e-14,
                               atol=1e-15)


def numpy_kernels():
    """A torch function mode computing torch's matrix products, sums along an axis and
    ``exp``/``log``/``tanh`` of CPU tensors with NumPy's functions, the kernels in which
    the torch backend may round otherwise than the specification."""
    import torch
    from torch.overrides import TorchFunctionMode

    unary = {torch.exp: np.exp, torch.log: np.log, torch.tanh: np.tanh}

    def numpy_sum(x, dim=None, keepdim=False, *, out=None):
        result = torch.from_numpy(np.asarray(np.sum(x.numpy(), axis=dim, keepdims=keepdim)))
        return result if out is None else out.copy_(result)

    def numpy_product(a, b, *, out=None):  # torch_math.product's batches of one
        result = torch.from_numpy(a[0].numpy() @ b[0].numpy())[None]
        return result if out is None else out.copy_(result)

    class NumpyKernels(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in unary:
                return torch.from_numpy(np.asarray(unary[func](args[0].numpy())))
            if func in (torch.sum, torch.Tensor.sum) and args[0].is_floating_point():
                return numpy_sum(*args, **kwargs)
            if func is torch.bmm and len(args[0]) == 1:
                return numpy_product(*args, **kwargs)
            return func(*args, **kwargs)

    return NumpyKernels()


NOISY_READS = PeripheryConfig(dac_bits=5, dac_range=0.7, dac_bound="managed", adc_bits=6,
                              adc_bound="managed", out_noise=0.01, w_noise=0.1)
ITERATIVE_READS = PeripheryConfig(dac_bits=7, dac_bound="managed", adc_bits=8,
                                  adc_range=0.05, adc_bound="iterative", out_noise=0.01)
DEVICE = dict(dw_min=0.002, dw_min_ctoc=0.2, dw_min_dtod=0.3, stuck_at_initial=0.05,
              up_down=0.1)


def reads_through(config, periphery: PeripheryConfig):
    """``config`` with ``periphery`` on its forward and feedback arrays, tiles of 100 x 8."""
    return dataclasses.replace(
        config, tiles=TileConfig(100, 8),
        forward=dataclasses.replace(config.forward, periphery=periphery),
        feedback=dataclasses.replace(config.feedback, periphery=periphery))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,rule,optimizer,activation,feedback", [
    ("ideal", "bp", "adam", "tanh", "stored"),
    ("noisy reads", "fa", "momentum", "relu", "regenerated"),
    ("iterative reads", "bp", "sgd", "relu", "sign"),
    ("pulsed", "dfa", "adam", "relu", "stored"),
    ("stochastic", "fa", "sgd", "tanh", "stored"),
    ("noisy reads", "sdfa", "adam", "tanh", "ternary"),
    ("stochastic", "drtp", "sgd", "relu", "regenerated")])
def test_steps_are_the_specifications_given_numpys_kernels(ideal_chip_config, kind, rule,
                                                          optimizer, activation, feedback,
                                                          dtype):
    """The torch backend makes the specification's operations in its order: with NumPy's
    matrix products, sums and exp/log/tanh in place of torch's (numpy_kernels), training
    steps give the reference's weights, optimizer moments, losses, pulses and re-reads
    bit for bit."""
    backend_under_test("torch")
    config = {"ideal": ideal_chip_config,
              "noisy reads": reads_through(ideal_chip_config, NOISY_READS),
              "iterative reads": reads_through(ideal_chip_config, ITERATIVE_READS),
              "pulsed": pulsed_chip(model="soft_bounds", **DEVICE),
              "stochastic": stochastic_chip(model="exp_step", nonlinearity_ltp=0.5,
                                            nonlinearity_ltd=-0.5, levels=64,
                                            write_noise=0.02)}[kind]
    optimizer = {"adam": OptimizerConfig(name="adam", lr=3e-3),
                 "momentum": OptimizerConfig(name="sgd", lr=0.05, momentum=0.9),
                 "sgd": OptimizerConfig(name="sgd", lr=0.05)}[optimizer]
    runs = []
    for backend in (NumpyBackend(dtype), backend_under_test("torch").backend(dtype)):
        chips = [make_chip(config, (784, 24, 12, 10), rule, seed, dtype, activation, feedback)
                 for seed in range(2)]
        states = [OptimizerState.create(optimizer, chip.n_params, chip.dtype) for chip in chips]
        losses = []
        with numpy_kernels() if backend.name == "torch" else contextlib.nullcontext():
            for step in range(3):
                for chip, state in zip(chips, states):
                    x, y = batch(8, seed=step, dtype=dtype)
                    grads = np.zeros(chip.n_params, dtype=chip.dtype)
                    losses.append(backend.train_step(chip, state, x, y, grads,
                                                     np.zeros_like(grads)))
        runs.append((losses, chips, states))
    (losses, chips, states), (torch_losses, torch_chips, torch_states) = runs
    assert torch_losses == losses
    for reference, replayed, state, replayed_state in zip(chips, torch_chips, states,
                                                          torch_states):
        for name in ("params", "pulses", "rereads"):
            np.testing.assert_array_equal(getattr(replayed, name), getattr(reference, name),
                                          err_msg=name)
        for name, value in state.state().items():
            np.testing.assert_array_equal(replayed_state.state()[name], value, err_msg=name)
    moved = {"pulsed": "pulses", "stochastic": "pulses", "iterative reads": "rereads"}
    assert kind in ("ideal", "noisy reads") or getattr(chips[0], moved[kind]).any()


def test_missing_torch_is_one_line_saying_how_to_install_it(monkeypatch, tmp_path, capsys):
    """Without torch neurosim works, and asking for the torch backend says what to install."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    for module in [m for m in sys.modules if m.startswith("neurosim.backends.torch")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(NeurosimError, match=r"pip install 'neurosim\[torch\]'"):
        create_backend(SimulationConfig(backend="torch"))
    create_backend(SimulationConfig(backend="numpy"))
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("name: t\ndata: {dataset: digits}\n")
    assert main(["run", str(experiment), "--backend", "torch", "--out", str(tmp_path / "out"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'neurosim[torch]'" in err, err
    assert err.startswith(f"error: {experiment}: ")
    assert not list((tmp_path / "out").glob("*/seed*"))  # refused before any run


def test_cuda_without_a_gpu_is_one_clear_line(tmp_path, capsys):
    """From the API, and from the command before any run starts, naming the file (the
    condition that asks for the GPU is not the first run)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(NeurosimError, match="sees no CUDA GPU") as error:
        create_backend(SimulationConfig(backend="torch", device="cuda"))
    assert "\n" not in str(error.value) and "simulation.device" in str(error.value)
    gpu_condition = ("conditions: {cpu: {}, gpu: {simulation.backend: torch, "
                     "simulation.device: cuda}}\n")

    def refused(command: str, config: Path) -> None:
        """``neurosim command config`` says so in one line naming ``config``."""
        assert main([command, str(config), "--out", str(tmp_path / command), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {config}: simulation.device = 'cuda': ") and \
            len(err.splitlines()) == 1, err

    experiment = tmp_path / "exp.yaml"
    experiment.write_text("name: t\ndata: {dataset: digits}\ntrain: {epochs: 1}\n"
                          + gpu_condition)
    refused("run", experiment)
    assert not list((tmp_path / "run").glob("*/seed*"))
    # a sweep on a local cluster: refused before it starts one (a scheduler's workers may
    # have the GPU this machine lacks)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nexperiment: {experiment.name}\nseeds: [0]\nbaseline: cpu\n"
                     + gpu_condition)
    refused("sweep", sweep)
    assert not (tmp_path / "sweep").exists()
