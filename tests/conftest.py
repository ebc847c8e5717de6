"""Shared test fixtures: small chips and experiment configs built in code, and the backends
under test (``fast``: numba, torch on the CPU, torch on a CUDA GPU; ``any_backend``: those
and the numpy reference)."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neurosim import devices, periphery
from neurosim.backends import numba_devices, numba_periphery
from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.chip import Chip
from neurosim.config import ChipConfig, NetworkConfig, load_chip
from neurosim.rules import get_rule

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "datasets"


def data_dir() -> Path | None:
    """The real dataset folder ($NEUROSIM_DATA, else ../shared/datasets), or None."""
    candidate = Path(os.environ.get("NEUROSIM_DATA", SHARED_DATA))
    return candidate if (candidate / "mnist").is_dir() else None


@pytest.fixture(scope="session")
def ideal_chip_config() -> ChipConfig:
    return load_chip(REPO / "hw_configs" / "ideal.yaml")


def make_chip(config: ChipConfig, dims=(784, 20, 10), rule="fa", seed=0, dtype="float64",
              activation="relu", feedback_kind="stored", distribution="uniform") -> Chip:
    feedback = dataclasses.replace(config.feedback, kind=feedback_kind, distribution=distribution)
    config = dataclasses.replace(config, feedback=feedback)
    return Chip(config, NetworkConfig(dims=tuple(dims), activation=activation), get_rule(rule),
                seed, dtype)


def batch(n: int, n_in: int = 784, n_classes: int = 10, seed: int = 0, dtype="float64"):
    generator = np.random.default_rng(seed)
    return (generator.random((n, n_in)).astype(dtype),
            generator.integers(0, n_classes, n).astype(np.int64))


# ------------------------------------------------------------------ backends under test
def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU (skipped without one)")


@dataclasses.dataclass(frozen=True)
class BackendUnderTest:
    """A backend and its kernels by test name: ``numpy`` (the reference), ``numba``,
    ``torch`` (CPU) or ``torch-cuda``."""

    name: str

    @property
    def device(self) -> str:
        return "cuda" if self.name == "torch-cuda" else "cpu"

    @property
    def exact_libm(self) -> bool:
        """Whether library functions (log1p, cos, exp, ...) round as NumPy's, so that
        normals and exp_step responses are bit-identical: everywhere but on CUDA
        (neurosim.backends.torch_math)."""
        return self.name != "torch-cuda"

    def backend(self, dtype: str = "float64"):
        if self.name == "numpy":
            return NumpyBackend(dtype)
        if self.name == "numba":
            return NumbaBackend(dtype)
        from neurosim.backends.torch_backend import TorchBackend  # torch is optional

        return TorchBackend(dtype, self.device)

    @property
    def devices(self):
        """pulsed_update, stochastic_update, apply_pulses (neurosim.devices' signatures)."""
        if self.name == "numpy":
            return devices
        if self.name == "numba":
            return numba_devices
        from neurosim.backends import torch_devices

        return torch_devices.kernels(self.device)

    @property
    def periphery(self):
        """read, transposed_read (neurosim.periphery's signatures) and matmul, the product
        they use."""
        if self.name == "numpy":
            return SimpleNamespace(read=periphery.read, transposed_read=periphery.transposed_read,
                                   matmul=np.matmul)
        if self.name == "numba":
            return numba_periphery
        from neurosim.backends import torch_periphery

        return SimpleNamespace(
            read=functools.partial(torch_periphery.read, device=self.device),
            transposed_read=functools.partial(torch_periphery.transposed_read,
                                              device=self.device),
            matmul=functools.partial(torch_periphery.matmul, device=self.device))

    def assert_replays(self, actual: np.ndarray, expected: np.ndarray) -> None:
        """Equal to the reference's result bit for bit; on CUDA, where library functions
        round differently (exact_libm), to those few ulp."""
        if self.exact_libm:
            np.testing.assert_array_equal(actual, expected)
        else:
            tolerance = 1e-12 if actual.dtype == np.float64 else 1e-6
            np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


def backend_under_test(name: str) -> BackendUnderTest:
    """The named backend; skips the test when torch (or, for torch-cuda, a GPU) is missing."""
    if name.startswith("torch"):
        torch = pytest.importorskip("torch")
        if name == "torch-cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA GPU")
        # The tests' arrays are small; on a 2-core machine whose other core is busy, each of
        # torch's parallel regions can wait a scheduler slice (~8 ms) for its second thread.
        torch.set_num_threads(1)
    return BackendUnderTest(name)


FAST_BACKENDS = ["numba", "torch", pytest.param("torch-cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=FAST_BACKENDS)
def fast(request) -> BackendUnderTest:
    """Each fast backend in turn, to compare with the numpy reference."""
    return backend_under_test(request.param)


@pytest.fixture(params=["numpy", *FAST_BACKENDS])
def any_backend(request) -> BackendUnderTest:
    """Every backend in turn, the reference included."""
    return backend_under_test(request.param)



class Interrupted(Exception):
    """Raised inside a run to simulate a crash."""


#: ``--set`` options that shrink a study (docs/scripts/results_*.py) to seconds: digits, two
#: seeds, a 16-unit network, a 20-step noise phase and small probes.
TINY_STUDY = [
    "--set", "data.dataset=digits", "--set", "data.train_size=256",
    "--set", "data.test_size=64", "--set", "seeds=[0, 1]",
    "--set", "network.dims=[784, 16, 10]",
    "--set", "evaluation.fractional_epochs=[0.5]",
    "--set", "precondition.steps=20", "--set", "precondition.n_examples=128",
    "--set", "precondition.log_every=10",
    "--set", "evaluation.train_probe_size=64", "--set", "evaluation.noise_probe_size=64",
    "--set", "optimizer.lr=0.01"]


def interrupted_then_resumed(monkeypatch, spec, run_dir, after_steps: int) -> dict:
    """Run ``spec`` into ``run_dir`` until training step ``after_steps + 1`` raises, then
    resume it from its checkpoint; returns the resumed run's summary."""
    from neurosim.train import Trainer, run_spec

    calls = {"n": 0}
    original = Trainer.step

    def failing_step(self, x, y):
        calls["n"] += 1
        if calls["n"] > after_steps:
            raise Interrupted
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "step", failing_step)
    with pytest.raises(Interrupted):
        run_spec(spec, run_dir)
    monkeypatch.setattr(Trainer, "step", original)
    assert (run_dir / "checkpoint.npz").exists()
    return run_spec(spec, run_dir, resume=True)
