"""Arithmetic backends behind one interface (:class:`neurosim.backends.base.Backend`).

* ``numpy``: plain, obvious code; the executable specification and the test oracle.
* ``numba``: the default CPU path; fused compiled kernels tested against ``numpy``.

A backend is chosen once from the simulation config and passed around; there is no global
backend state.
"""

from __future__ import annotations

from neurosim.backends.base import Backend
from neurosim.config import SimulationConfig


def create_backend(simulation: SimulationConfig) -> Backend:
    """The backend named by ``simulation.backend``, configured for its dtype and threads."""
    if simulation.backend == "numpy":
        from neurosim.backends.numpy_ref import NumpyBackend

        return NumpyBackend(simulation.dtype)
    from neurosim.backends.numba_cpu import NumbaBackend

    return NumbaBackend(simulation.dtype, simulation.threads, simulation.deterministic)
