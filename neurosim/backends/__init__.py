"""Arithmetic backends behind one interface (:class:`neurosim.backends.base.Backend`).

* ``numpy``: plain, obvious code; the executable specification and the test oracle.
* ``numba``: the default CPU path; fused compiled kernels tested against ``numpy``.
* ``torch``: CPU or CUDA (``simulation.device``), tested against ``numpy``; needs the
  optional dependency (``pip install 'neurosim[torch]'``).

A backend is chosen once from the simulation config and passed around; there is no global
backend state.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from neurosim.backends.base import Backend
from neurosim.config import SimulationConfig
from neurosim.errors import NeurosimError


def create_backend(simulation: SimulationConfig) -> Backend:
    """The backend named by ``simulation.backend``, configured for its dtype, device and
    threads. A missing optional dependency or GPU is a :class:`NeurosimError` (one line)."""
    if simulation.backend == "numpy":
        from neurosim.backends.numpy_ref import NumpyBackend

        return NumpyBackend(simulation.dtype)
    if simulation.backend == "torch":
        try:
            from neurosim.backends.torch_backend import TorchBackend
        except ImportError as error:
            if error.name != "torch":
                raise
            raise NeurosimError("simulation.backend = 'torch' needs PyTorch, which is not "
                                "installed: pip install 'neurosim[torch]'") from None
        return TorchBackend(simulation.dtype, simulation.device, simulation.threads,
                            simulation.fused_update)
    from neurosim.backends.numba_cpu import NumbaBackend

    return NumbaBackend(simulation.dtype, simulation.threads, simulation.deterministic)


def check_available(simulations: Iterable[SimulationConfig], source: Path | str | None) -> None:
    """Raise :func:`create_backend`'s error, prefixed by the configuration's ``source``
    file, if one of ``simulations``' backends cannot run here (torch missing, no CUDA GPU):
    for a command to refuse before it starts any run. NumPy and Numba always can."""
    for simulation in dict.fromkeys(simulations):
        if simulation.backend != "torch":
            continue
        try:
            create_backend(simulation)
        except NeurosimError as error:
            raise NeurosimError(f"{source}: {error}" if source else str(error)) from None
