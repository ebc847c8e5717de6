"""The torch backend's own pieces: its counter-based generator against neurosim.rng, and
how it is asked for (config, missing torch, missing GPU). Its kernels are compared with the
numpy reference by the shared suites (the ``fast`` fixture of conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import backend_under_test

from neurosim import rng
from neurosim.backends import create_backend
from neurosim.cli import main
from neurosim.config import SimulationConfig
from neurosim.errors import NeurosimError

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
