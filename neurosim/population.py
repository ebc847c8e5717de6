"""A population of chips: ``M`` chips of one shape and chip configuration, stepped at once.

The chips of a population differ only by their seed (initial weights, feedback matrices,
device draws, read and pulse noise, data order). Their state gets a leading chip
dimension: the flat parameters (:attr:`Population.params`, ``M x n_params``), the devices'
per-device arrays (``M x n_weights``, layer after layer), the stored feedback and, once a
backend steps them, the optimizers' moments sit in one C-contiguous buffer per quantity,
and each chip's (or optimizer's) own attribute becomes a view of its row. So every chip
remains a complete :class:`neurosim.chip.Chip` (evaluation, checkpoints and the ledger
work on it alone, as in a single-chip run) while a backend runs the training step of all
of them in one call (:meth:`neurosim.backends.base.Backend.population_step`).

**State held on a GPU.** A backend may keep the population's training state (parameters,
optimizer moments, pulse counts) on its device between steps (:attr:`Population.resident`,
see :mod:`neurosim.backends.torch_population`) instead of copying it in and out on every
step. The host buffers are then brought up to date lazily: reading a chip's ``params`` or
``pulses`` or an optimizer's ``state()`` calls :meth:`Population.pull`, which copies the
device state back once after the last step; writing state (``load_state``) calls
:meth:`Population.release` first, and the next step uploads the host buffers again.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from neurosim import rng
from neurosim.chip import Chip
from neurosim.config import OptimizerConfig, shared_hardware
from neurosim.optimizers import OptimizerState

DEVICE_ARRAYS = ("step_up", "step_down", "w_min", "w_max", "stuck")


def adopt(owners: list, name: str) -> np.ndarray:
    """Stack the flat arrays ``owner.<name>`` into one buffer (a row per owner, a copy) and
    make each owner's attribute its row (a view): the owners keep working on their own
    state and a backend can work on all of them at once. Owners whose array is empty keep
    it and their row stays unused (zeros): optimizers of different kinds keep different
    moments (plain SGD has no ``m``; only Adam has ``v``), and a population's chips may
    be in different phases, with different optimizers."""
    width = max(getattr(owner, name).size for owner in owners)
    stacked = np.zeros((len(owners), width), dtype=getattr(owners[0], name).dtype)
    for owner, row in zip(owners, stacked):
        if getattr(owner, name).size:
            row[:] = getattr(owner, name)
            setattr(owner, name, row)
    return stacked


@functools.lru_cache(maxsize=1024)
def call_key(config: OptimizerConfig) -> OptimizerConfig:
    """What the chips of one population step must share of their optimizer configuration:
    all of it but Adam's learning rate, which enters through each chip's own step size
    (:meth:`OptimizerState.adam_scalars`), so that a sweep of learning rates is one call."""
    return dataclasses.replace(config, lr=0.0) if config.name == "adam" else config


def shared_optimizer(states: list[OptimizerState], active: list[int]) -> OptimizerConfig:
    """The optimizer configuration of the chips ``active`` of a population step, for a
    backend that steps them in one call (with Adam, the first chip's learning rate: the
    backends take each chip's from its step size); refused when their :func:`call_key`
    differs (chips in different phases or conditions: :func:`neurosim.train.run_population`
    makes one call per key)."""
    config = states[active[0]].config
    key = None  # made only for configurations that are not plainly equal (per step: cheap)
    for c in active:
        other = states[c].config
        if other is config or other == config:
            continue
        key = call_key(config) if key is None else key
        if call_key(other) != key:
            raise ValueError("the chips of one population step must share their optimizer "
                             "configuration; step each optimizer's chips in a call of their "
                             "own")
    return config


class Population:
    """``M`` chips with stacked state (see the module docstring).

    Attributes: ``params`` (``M x n_params``, the chips' ``params`` are its rows), scratch
    ``grads`` and ``deltas`` of the same shape, ``alphas`` and ``inverse_alphas``
    (``M x n_layers``, the simulation dtype), ``devices`` (name -> ``M x n_weights``, the
    chips' :class:`neurosim.devices.DeviceState` arrays are row segments; ``None`` for
    ideal devices) with layer ``l``'s devices at ``device_offsets[l] .. device_offsets[l+1]``.
    """

    def __init__(self, chips: list[Chip]):
        if not chips:
            raise ValueError("a population needs at least one chip")
        first = chips[0]

        def shared(chip: Chip) -> tuple:
            return (chip.dims, chip.dtype, shared_hardware(chip.config), chip.rule.code,
                    chip.activation)

        reference = shared(first)
        if any(shared(chip) != reference for chip in chips[1:]):
            raise ValueError("the chips of a population must share their shapes, dtype, "
                             "chip configuration (but for what each chip draws, "
                             "neurosim.config.shared_hardware), rule and activation")
        self.chips = chips
        self.size = len(chips)
        self.resident = None  # the backend's copy of the state on its device, if any
        for chip in chips:
            chip.population = self
        self.params = adopt(chips, "params")
        self.grads = np.zeros_like(self.params)
        self.deltas = np.zeros_like(self.params)
        # every chip's unbooked re-reads (Chip.rereads), its own a view of its row
        self.rereads = np.stack([chip.rereads for chip in chips])
        for chip, row in zip(chips, self.rereads):
            chip.rereads = row
        self.alphas = np.stack([chip.alphas_typed for chip in chips])
        self.inverse_alphas = np.stack([chip.inverse_alphas_typed for chip in chips])
        # Feedback without drift never changes: crossbars are the chips' own buffers,
        # stacked; regenerated feedback (fixed keys) is drawn once per backend that asks
        # (feedback()), not on every step.
        self.static_feedback = all(chip.feedback_nu is None for chip in chips)
        self._regenerated = first.feedback_kind == "regenerated"
        self._feedback = (adopt(chips, "feedback")
                          if self.static_feedback and not self._regenerated
                          else np.empty((self.size, first.feedback.size), dtype=first.dtype))
        self._drawn_by = None  # the backend whose draws _feedback holds (regenerated)
        self.devices: dict[str, np.ndarray] | None = None
        self.device_offsets = np.zeros(first.n_layers + 1, dtype=np.int64)
        if first.devices is not None:
            self.device_offsets[1:] = np.cumsum([state.n for state in first.devices])
            self.devices = {}
            for name in DEVICE_ARRAYS:
                stacked = np.stack([np.concatenate([getattr(state, name)
                                                    for state in chip.devices])
                                    for chip in chips])
                for chip, row in zip(chips, stacked):
                    for l, state in enumerate(chip.devices):
                        setattr(state, name,
                                row[self.device_offsets[l]:self.device_offsets[l + 1]])
                self.devices[name] = stacked
        self._states: list[OptimizerState] | None = None
        self._moments: tuple[np.ndarray, np.ndarray] | None = None

    def moments(self, states: list[OptimizerState]) -> tuple[np.ndarray, np.ndarray]:
        """The optimizers' moments ``m``, ``v`` as ``M x k`` buffers, the states' own arrays
        becoming their rows (:func:`adopt`: ``k = n_params`` if any chip's optimizer keeps
        the moment, else 0); stacked again when a state was replaced (a new phase, a restored
        checkpoint)."""
        if self._states is None or any(a is not b for a, b in zip(states, self._states)):
            self.release()
            self._moments = adopt(states, "m"), adopt(states, "v")
            self._states = list(states)
            for state in states:
                state.population = self
        return self._moments

    def pull(self) -> None:
        """Make the host buffers current: copy back what a backend changed on its device
        since the last pull (nothing to do when no state is held on a device)."""
        if self.resident is not None and self.resident.host_stale:
            self.resident.download()

    def release(self) -> None:
        """Pull, then drop the device copy: the host buffers are the state again (call
        before writing them; the next population step uploads them anew)."""
        self.pull()
        self.resident = None

    def feedback(self, backend) -> np.ndarray:
        """Every chip's feedback as it applies it now (``M x n_feedback``): the stacked
        crossbars, or :meth:`Backend.feedback_buffer` of each chip: for drifting feedback on
        every call, for regenerated feedback (the same values from the same keys every
        time) once per backend."""
        if self.static_feedback and (not self._regenerated or self._drawn_by is backend):
            return self._feedback
        for c, chip in enumerate(self.chips):
            self._feedback[c] = backend.feedback_buffer(chip)
        self._drawn_by = backend
        return self._feedback

    def read_keys(self, active: list[int], training: bool = True) -> np.ndarray:
        """Read-noise keys of a training step (``training``) or of a measurement pass of
        the chips ``active`` (``A x n_layers x 3``, :meth:`Chip.read_keys`, taken in the
        order of ``active``)."""
        return np.stack([self.chips[c].read_keys(training) for c in active])

    def pulse_keys(self, active: list[int],
                   first: rng.Purpose = rng.Purpose.PULSE_ROUNDING) -> np.ndarray:
        """Rounding and noise keys of the next programming event of the chips ``active``
        (``A x n_layers x 2``, :meth:`Chip.pulse_keys`, computed for all chips at once);
        with ``first = PULSE_LINES``, the line and noise keys of an in-array update
        (:meth:`Chip.stochastic_keys`)."""
        chips = [self.chips[c] for c in active]
        seeds = [chip.seed for chip in chips]
        steps = [chip.update_count for chip in chips]
        keys = np.empty((len(chips), chips[0].n_layers, 2), dtype=np.uint64)
        for l in range(chips[0].n_layers):
            for k, purpose in enumerate((first, rng.Purpose.PULSE_NOISE)):
                keys[:, l, k] = rng.stream_keys(seeds, steps, l, purpose)
        return keys
