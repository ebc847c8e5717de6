"""A population's training state held on the torch backend's device between steps.

Copying a population's state between the host and a GPU on every step costs more than the
step: 256 chips of a ``[784, 100, 10]`` network hold 80 MB of parameters in float32, and
Adam two moments more. :class:`ResidentPopulation` uploads the state once (parameters,
optimizer moments, stored or regenerated feedback, the devices' per-device arrays) and then
runs every :meth:`TorchBackend.population_step` on the device copies: batched reads over a
leading chip dimension (through the periphery, each chip's own noise streams), the
optimizer and the ideal update element-wise over all chips at once (on a GPU in one kernel,
as the pulse counts: :mod:`neurosim.backends.torch_fused`), the pulsed update of
every chip together (:func:`neurosim.backends.torch_devices._pulse_trains` over the chips'
rows: the same draws by index as chip by chip) and the in-array update of every chip
together (:func:`neurosim.backends.torch_devices.population_stochastic_update`). The only
transfers of a step are the batch (unless it already lies on the device), the per-chip
keys and Adam scalars when they differ between chips, and the losses and correct counts;
with iterative bound management also, per round of a read, the count of the samples each
chip's tiles read again (added to the chips' host :attr:`Chip.rereads` at once).

The host buffers of :class:`neurosim.population.Population` stay the state's home for
everything else (evaluation, metrics, checkpoints): after a step they are marked stale, and
the first read of a chip's ``params`` or ``pulses`` or an optimizer's ``state()`` copies
everything back once (:meth:`download`, through :meth:`Population.pull`); a write
(``load_state``) drops this copy first (:meth:`Population.release`) and the next step
uploads again. Pulses are counted on the device and added to the chips' ``pulses`` at the
download.

The same code runs on the CPU (the copies are then CPU tensors), so the CI exercises the
exact logic that runs on a GPU, stale host buffers included.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from neurosim import rng
from neurosim.backends.torch_devices import (_pulse_trains, population_stochastic_update,
                                           pulse_counts)
from neurosim.backends.torch_fused import FusedStep
from neurosim.backends.torch_math import upload
from neurosim.devices import FREE
from neurosim.optimizers import OptimizerState
from neurosim.population import DEVICE_ARRAYS, Population, shared_optimizer


class ResidentPopulation:
    """Device copies of ``population``'s state (see the module docstring); ``backend``
    is the :class:`neurosim.backends.torch_backend.TorchBackend` that steps it."""

    def __init__(self, backend, population: Population, states: list[OptimizerState]):
        self.backend, self.population = backend, population
        device = backend.device
        chip = population.chips[0]

        def upload(array: np.ndarray) -> torch.Tensor:
            return torch.tensor(array, device=device)  # always a copy, on the CPU too

        self.params = upload(population.params)
        self.grads, self.deltas = torch.empty_like(self.params), torch.empty_like(self.params)
        self.m, self.v = (upload(moment) for moment in population.moments(states))
        self.feedback = upload(population.feedback(backend)) if population.static_feedback else None
        self.alphas = backend._scales(population.alphas)
        self.inverse_alphas = backend._scales(population.inverse_alphas)
        self.pulses = torch.zeros((population.size, chip.n_layers, 2), dtype=torch.int64,
                                  device=device)
        self.devices: list[dict[str, torch.Tensor]] | None = None
        if chip.update_mode != "ideal":  # per layer, M x n_l contiguous
            offsets = population.device_offsets
            self.devices = []
            for l in range(chip.n_layers):
                part = slice(int(offsets[l]), int(offsets[l + 1]))
                layer = {name: upload(population.devices[name][:, part])
                         for name in DEVICE_ARRAYS if name != "stuck"}
                layer["free"] = upload(population.devices["stuck"][:, part] == FREE)
                self.devices.append(layer)
        self.every_chip = list(range(population.size))
        self.host_stale = False
        # the optimizer, ideal update and pulse counts as kernels (not the in-array update)
        self.fused = (FusedStep(chip, device) if backend.fused_update
                      and chip.update_mode != "stochastic" else None)
        self.fused_inverse_alphas = (upload(population.inverse_alphas)
                                     if self.fused is not None else None)

    # -------------------------------------------------------------- transfers
    def download(self) -> None:
        """Copy the state back into the population's host buffers; add the pulses counted
        since the last download to the chips' ``pulses``. The scratch ``grads`` and
        ``deltas`` stay on the device (nothing reads them between steps)."""
        self.host_stale = False
        population = self.population
        population.params[...] = self.params.cpu().numpy()
        for host, tensor in zip(population.moments(population._states), (self.m, self.v)):
            host[...] = tensor.cpu().numpy()
        for chip, counts in zip(population.chips, self.pulses.cpu().numpy()):
            chip._pulses += counts
        self.pulses.zero_()

    # ------------------------------------------------------------------- step
    def step(self, states: list[OptimizerState], active: list[int], x, y) -> tuple:
        """One training step of the chips ``active`` on their batches ``x[k]``, ``y[k]``
        (NumPy arrays or tensors), as :meth:`Backend.population_step` specifies; returns
        the chips' summed losses and correct counts as tensors (not waited for)."""
        backend, population = self.backend, self.population
        chip = population.chips[0]
        device = backend.device
        rows = (None if active == self.every_chip  # all chips, in the population's order
                else torch.as_tensor(active, dtype=torch.int64, device=device))

        def take(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if rows is None else tensor.index_select(0, rows)

        params, m, v = take(self.params), take(self.m), take(self.v)
        feedback = (self.feedback if self.feedback is not None
                    else torch.as_tensor(population.feedback(backend), device=device))
        if rows is None:
            alphas, inverse_alphas = self.alphas, self.inverse_alphas
            grads, updates = self.grads, self.deltas
        else:
            alphas = backend._scales(population.alphas[active])
            inverse_alphas = backend._scales(population.inverse_alphas[active])
            grads, updates = torch.empty_like(params), torch.empty_like(params)
        with backend.population_rereads(population, active, training=True) as rereads:
            loss, correct, inputs, deltas = backend._signal_tensors(
                chip, params, take(feedback),
                torch.as_tensor(x, dtype=params.dtype, device=device),
                torch.as_tensor(y, dtype=torch.int64, device=device),
                backend.population_read_keys(population, active, training=True), alphas,
                int(chip.rule.code), rereads)
        if chip.update_mode == "stochastic":
            self._stochastic_update(params, inputs, deltas, inverse_alphas,
                                    shared_optimizer(states, active).lr, active, rows)
        else:
            backend._gradient_tensors(chip, inputs, deltas, grads)
            optimizer, scalars = shared_optimizer(states, active), self._adam_scalars(states,
                                                                                     active)
            if self.fused is not None:
                ideal = chip.update_mode == "ideal"
                self.fused(optimizer, params, m, v, grads, None if ideal else updates,
                           upload(scalars, device),
                           self._fused_inverse_alphas(active, rows) if ideal else None)
            else:
                backend._optimize(optimizer, chip.dtype.type, m, v, grads, updates,
                                  *self._scalar_operands(scalars))
        if chip.update_mode == "pulsed":
            self._pulsed_update(params, updates, inverse_alphas, active, rows)
        elif chip.update_mode == "ideal" and self.fused is None:
            backend._ideal_update(chip, params, updates, inverse_alphas)
        if rows is not None:
            for whole, part in ((self.params, params), (self.m, m), (self.v, v),
                                (self.grads, grads), (self.deltas, updates)):
                if whole.numel():
                    whole.index_copy_(0, rows, part)
        for c in active:
            population.chips[c].update_count += 1
            states[c].step += 1
        self.host_stale = True
        return loss, correct

    def _fused_inverse_alphas(self, active: list[int], rows) -> torch.Tensor:
        """The stepped chips' ``1 / alpha_l`` (``A x n_layers``) for the fused kernels."""
        if rows is None:
            return self.fused_inverse_alphas
        return upload(self.population.inverse_alphas[active], self.params.device)

    def _adam_scalars(self, states: list[OptimizerState], active: list[int]) -> np.ndarray:
        """Adam's ``-step_size`` and ``1 / sqrt(1 - b2^t)`` in the chips' dtype, one row
        (``1 x 2``) when they are the same for every active chip (the same step and
        learning rate, the usual case), else one row per chip (``A x 2``)."""
        t = self.population.chips[0].dtype.type
        shared = (len({states[c].step for c in active}) == 1
                  and len({states[c].config.lr for c in active}) == 1)
        scalars = np.array([states[c].adam_scalars() for c in active[:1 if shared else None]])
        return np.stack([-scalars[:, 0].astype(t), scalars[:, 1].astype(t)], axis=1)

    def _scalar_operands(self, scalars: np.ndarray) -> tuple:
        """:meth:`_adam_scalars` as :meth:`TorchBackend._optimize` takes them: floats when
        shared, else ``A x 1`` tensors."""
        if scalars.shape[0] == 1:
            return float(scalars[0, 0]), float(scalars[0, 1])
        return tuple(torch.as_tensor(np.ascontiguousarray(scalars[:, k:k + 1]),
                                     device=self.params.device) for k in range(2))

    def _layer_devices(self, l: int, rows) -> SimpleNamespace:
        """Layer ``l``'s devices of the stepped chips (all, or ``rows``) as flat tensors,
        chip after chip, with the layer's :class:`DeviceState` (the model's scalars)."""
        layer = {name: tensor if rows is None else tensor.index_select(0, rows)
                 for name, tensor in self.devices[l].items()}
        return SimpleNamespace(state=self.population.chips[0].devices[l],
                               **{name: tensor.reshape(-1) for name, tensor in layer.items()})

    def _count(self, counted: torch.Tensor, rows) -> None:
        """Add the stepped chips' pulses (``A x n_layers x 2``) to their device counts."""
        if rows is None:
            self.pulses += counted
        else:
            self.pulses.index_add_(0, rows, counted)

    def _stochastic_update(self, params: torch.Tensor, inputs: list, errors: list,
                           inverse_alphas: list, lr: float, active: list[int], rows) -> None:
        """:meth:`Backend.apply_stochastic_update` of every active chip at once: each
        layer's pulse trains (:func:`population_stochastic_update`, with each chip's line
        and noise keys), then the biases' SGD step ``b -= lr sum_batch(errors)`` (summed
        sample after sample, as NumPy sums the rows)."""
        chip = self.population.chips[0]
        bl = chip.config.forward.update.bl
        step = float(chip.dtype.type(lr))
        keys = upload(self.population.pulse_keys(active, rng.Purpose.PULSE_LINES)
                      .view(np.int64), params.device)
        counted = torch.zeros((len(active), chip.n_layers, 2), dtype=torch.int64,
                              device=params.device)
        for l in range(chip.n_layers):
            w_off, n_out, n_in, b_off = (int(v) for v in chip.layout[l])
            w = params[:, w_off:w_off + n_out * n_in].contiguous()
            counted[:, l] = population_stochastic_update(
                w, inputs[l], errors[l] * inverse_alphas[l], self._layer_devices(l, rows), lr,
                bl, keys[:, l, 0], keys[:, l, 1])
            params[:, w_off:w_off + n_out * n_in] = w
            total = errors[l][:, 0].clone()
            for i in range(1, errors[l].shape[1]):
                total += errors[l][:, i]
            params[:, b_off:b_off + n_out] += -step * total
        self._count(counted, rows)

    def _pulsed_update(self, params: torch.Tensor, updates: torch.Tensor,
                       inverse_alphas: list, active: list[int], rows) -> None:
        """:meth:`Backend.apply_pulsed_update` of every active chip at once: each layer's
        ``dW (1 / alpha)`` rounded to pulses with the chip's rounding key, the pulse trains
        of all chips' devices in one set of rounds (:func:`_pulse_trains` over the rows),
        the pulses counted per chip and layer; ``b += db``."""
        chip = self.population.chips[0]
        max_pulses = chip.config.forward.update.max_pulses
        device = params.device
        # A x n_layers x (rounding, noise), uint64 bits in int64 words, in one upload
        keys = upload(self.population.pulse_keys(active).view(np.int64), device)
        counted = torch.zeros((len(active), chip.n_layers, 2), dtype=torch.int64,
                              device=device)
        for l, state in enumerate(chip.devices):
            w_off, n_out, n_in, b_off = (int(v) for v in chip.layout[l])
            n = n_out * n_in
            devices = self._layer_devices(l, rows)
            if self.fused is not None:  # the same counts in one kernel
                counts, up = self.fused.pulse_counts(
                    updates, l, self._fused_inverse_alphas(active, rows), keys, devices.free,
                    state.dw_min, max_pulses, counted)
            else:
                dw = updates[:, w_off:w_off + n] * inverse_alphas[l].view(-1, 1)  # array units
                counts = pulse_counts(dw, state.dw_min, max_pulses, keys[:, l, 0, None], 0)
                counts = torch.where(devices.free.view(-1, n), counts, 0)
                up = dw > 0
                counted[:, l, 0] = torch.where(up, counts, 0).sum(dim=1)
                counted[:, l, 1] = torch.where(up, 0, counts).sum(dim=1)
            w = params[:, w_off:w_off + n].reshape(-1)  # a copy: the rows are strided
            _pulse_trains(w, counts.reshape(-1), up.reshape(-1), devices, 0,
                          keys[:, l, 1], max_pulses, row_length=n)
            params[:, w_off:w_off + n] = w.view(-1, n)
            params[:, b_off:b_off + n_out] += updates[:, b_off:b_off + n_out]
        self._count(counted, rows)

