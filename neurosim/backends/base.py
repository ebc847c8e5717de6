"""The backend interface: every arithmetic operation the simulator needs.

A backend receives the chip's flat buffers (see :mod:`neurosim.chip`) and the optimizer
state and computes in the simulation dtype. Random numbers come from the counter-based
streams of :mod:`neurosim.rng`, so all backends draw identical numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from neurosim.chip import Chip
from neurosim.optimizers import OptimizerState
from neurosim.pair import one_sided_update, refresh, refresh_keys, refresh_pulses
from neurosim.rows import Rows, gathered

if TYPE_CHECKING:
    from neurosim.population import Population


class Backend(ABC):
    """Arithmetic for one simulation dtype; stateless apart from scratch buffers.

    ``device_kernels`` is the module (or namespace: torch binds its device) implementing the
    device updates for this backend (``pulsed_update``, ``stochastic_update`` with the
    signatures of :mod:`neurosim.devices`, the specification)."""

    name: str
    device_kernels: ModuleType | SimpleNamespace

    def __init__(self, dtype: str = "float32"):
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------ random numbers
    @abstractmethod
    def uniform(self, key: int, n: int) -> np.ndarray:
        """``n`` float64 uniforms in [0, 1) of stream ``key`` (:func:`neurosim.rng.uniform`)."""

    @abstractmethod
    def normal(self, key: int, n: int) -> np.ndarray:
        """``n`` float64 standard normals of stream ``key`` (:func:`neurosim.rng.normal`)."""

    def scaled_draws(self, key: int, n: int, gaussian: bool, scale: float, shift: float,
                     dtype: np.dtype) -> np.ndarray:
        """``z * scale + shift`` for the first ``n`` draws ``z`` of stream ``key``
        (standard normals if ``gaussian``, else uniforms in [0, 1): :meth:`normal`,
        :meth:`uniform`), in float64 (the product, then the sum: no fused multiply-add),
        rounded to ``dtype``: noise inputs. This implementation, the specification, makes
        the float64 draws first; fast backends make the values in one pass."""
        values = self.normal(key, n) if gaussian else self.uniform(key, n)
        values *= scale
        values += shift
        return values.astype(dtype, copy=False)

    # ------------------------------------------------------------------ feedback
    def feedback_buffer(self, chip: Chip) -> np.ndarray:
        """The flat feedback matrices the chip applies now.

        Crossbars (stored, sign, ternary) are read as programmed, drifted to the chip's
        clock (:meth:`Chip.drifted_feedback`); regenerated feedback is re-drawn from its keys
        on every call (the digital logic's PRNG), into a scratch buffer.
        """
        if chip.feedback_kind != "regenerated":
            return chip.drifted_feedback()
        scratch = np.empty_like(chip.feedback)
        self.regenerate_feedback(chip, scratch)
        return scratch

    @abstractmethod
    def regenerate_feedback(self, chip: Chip, out: np.ndarray) -> None:
        """Draw every feedback matrix of ``chip`` from its key into ``out`` (flat)."""

    # ---------------------------------------------------------------- arithmetic
    # Every pass reads the arrays through their periphery (DAC, read noise, ADC), with the
    # read-noise keys of Chip.read_keys: ``training=True`` for the reads of a training step,
    # otherwise reads made to measure.
    @abstractmethod
    def logits(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        """Output pre-activations ``a_L`` for inputs ``x`` (batch x n_0): one measurement
        pass."""

    @abstractmethod
    def local_signals(self, chip: Chip, feedback: np.ndarray, x: np.ndarray, y: np.ndarray,
                      rule_code: int, training: bool = False) -> tuple[float, int, list, list]:
        """What each layer sees locally: (summed loss, correct predictions, inputs
        ``h_{l-1}`` (batch x n_{l-1}) and the rule's errors ``delta_l`` (batch x n_l,
        divided by the batch size) of every layer). The rule's gradient of layer ``l`` is
        ``delta_l^T h_{l-1}``; in-array (stochastic) updates use the signals themselves.
        Backward reads: BP reads each forward array transposed (weight transport); FA and
        the direct rules read the feedback arrays (``feedback``, as the chip applies it)
        through the feedback periphery, or multiply digitally for regenerated feedback. The
        reads see each sample's own signal (the error ``softmax(a_L) - onehot``, or SDFA's
        sign of it, or DRTP's one-hot target, and what the reads make of it);
        the batch mean's ``1 / batch`` is digital and divides the errors after the reads,
        so a converter's range and resolution act on a sample's signal whatever the batch
        size."""

    @abstractmethod
    def gradients(self, chip: Chip, feedback: np.ndarray, x: np.ndarray, y: np.ndarray,
                  rule_code: int, out: np.ndarray, training: bool = False) -> tuple[float, int]:
        """The rule's gradient ``mean_batch(delta_l h_{l-1}^T)`` (and bias gradient
        ``mean_batch(delta_l)``) of every layer, in network units, written into ``out``
        (the chip's flat layout). Returns (summed cross-entropy loss, correct predictions)
        of the forward pass it ran."""

    @abstractmethod
    def optimizer_step(self, state: OptimizerState, grads: np.ndarray, out: np.ndarray) -> None:
        """Write the desired update ``dW`` for gradient ``grads`` into ``out`` and advance
        the optimizer state by one step."""

    @abstractmethod
    def apply_ideal_update(self, chip: Chip, deltas: np.ndarray) -> None:
        """Realize ``dW`` exactly: ``w += dW * (1 / alpha)`` clipped to ``[w_min, w_max]``;
        ``b += db`` (arithmetic in the simulation dtype)."""

    def apply_pulsed_update(self, chip: Chip, deltas: np.ndarray) -> None:
        """Realize ``dW`` by programming pulses on every forward array (the chip's device
        models; :func:`neurosim.devices.pulsed_update` is the specification); ``b += db``.
        Adds the pulses sent to ``chip.pulses``."""
        max_pulses = chip.config.forward.update.max_pulses
        for l, device in enumerate(chip.devices):
            w_off, n_out, n_in, b_off = chip.layout[l]
            w_end = w_off + n_out * n_in
            dw = deltas[w_off:w_end] * chip.inverse_alphas_typed[l]  # array units
            up, down = self.device_kernels.pulsed_update(
                chip.params[w_off:w_end], dw, device, device.dw_min, max_pulses,
                *chip.pulse_keys(l))
            chip.pulses[l] += (up, down)
            chip.bias(l)[:] += deltas[b_off:b_off + n_out]

    def apply_pair_update(self, chip: Chip, deltas: np.ndarray) -> None:
        """Realize ``dW`` on differential pairs (:mod:`neurosim.pair`, the specification):
        SET pulses on G+ or G- by this backend's ``pulsed_update``, the pairs refreshed after
        every ``refresh_every``-th programming event; each layer's weights then read from
        its pairs; ``b += db``. Adds the pulses (SET up, RESET down) to ``chip.pulses`` and
        the refreshes to ``chip.refreshes``."""
        forward = chip.config.forward
        every = forward.pair.refresh_every
        refreshing = every > 0 and (chip.update_count + 1) % every == 0
        cap = refresh_pulses(forward) if refreshing else 0
        for l, pairs in enumerate(chip.pairs):
            w_off, n_out, n_in, b_off = chip.layout[l]
            dw = deltas[w_off:w_off + n_out * n_in] * chip.inverse_alphas_typed[l]
            chip.pulses[l, 0] += one_sided_update(
                self.device_kernels, pairs, dw, pairs.plus.dw_min, forward.update.max_pulses,
                *chip.pulse_keys(l))
            if refreshing:
                refreshed, resets, sets = refresh(
                    self.device_kernels, pairs, forward.pair.refresh_threshold,
                    pairs.plus.dw_min, cap,
                    *refresh_keys(chip.seed, chip.update_count, l))
                chip.pulses[l] += (sets, resets)
                chip.refreshes[l] += (1, refreshed)
            chip.weights(l).reshape(-1)[:] = pairs.weights()
            chip.bias(l)[:] += deltas[b_off:b_off + n_out]

    def apply_stochastic_update(self, chip: Chip, state: OptimizerState, inputs: list,
                                errors: list) -> None:
        """In-array SGD: each layer's per-sample inputs and errors (from
        :meth:`local_signals`) drive Bernoulli pulse trains
        (:func:`neurosim.devices.stochastic_update` is the specification) so that the
        expected change is ``dW = -lr sum_s errors_s inputs_s^T``; biases take the same SGD
        step digitally. Advances ``chip.update_count`` and the optimizer's step count."""
        bl = chip.config.forward.update.bl
        lr = state.config.lr
        for l, device in enumerate(chip.devices):
            w_off, n_out, n_in, _ = chip.layout[l]
            d = errors[l] * chip.inverse_alphas_typed[l]  # array units
            up, down = self.device_kernels.stochastic_update(
                chip.params[w_off:w_off + n_out * n_in], inputs[l], d, device, lr, bl,
                *chip.stochastic_keys(l))
            chip.pulses[l] += (up, down)
            chip.bias(l)[:] += -chip.dtype.type(lr) * errors[l].sum(axis=0)
        chip.update_count += 1
        state.step += 1

    def update(self, chip: Chip, state: OptimizerState, grads: np.ndarray,
               deltas: np.ndarray) -> None:
        """One programming event: the optimizer turns ``grads`` into ``dW`` (``deltas``),
        then the forward arrays realize it as the chip's update mode says."""
        self.optimizer_step(state, grads, deltas)
        if chip.pairs is not None:
            self.apply_pair_update(chip, deltas)
        elif chip.update_mode == "pulsed":
            self.apply_pulsed_update(chip, deltas)
        else:
            self.apply_ideal_update(chip, deltas)
        chip.update_count += 1

    # ------------------------------------------------------------- training steps
    def train_step(self, chip: Chip, state: OptimizerState, x: np.ndarray, y: np.ndarray,
                   grads: np.ndarray, deltas: np.ndarray) -> tuple[float, int]:
        """One training step of ``chip`` on a batch; returns (summed loss, correct
        predictions).

        Batch modes (ideal, pulsed): the rule's gradient (into ``grads``), the optimizer's
        ``dW`` (into ``deltas``), realized on the arrays (:meth:`update`). In-array mode
        (stochastic): each layer's local signals drive pulse trains in the array itself,
        sample by sample (:meth:`apply_stochastic_update`)."""
        feedback = self.feedback_buffer(chip)
        if chip.update_mode == "stochastic":
            loss, correct, inputs, errors = self.local_signals(chip, feedback, x, y,
                                                               chip.rule.code, training=True)
            self.apply_stochastic_update(chip, state, inputs, errors)
            return loss, correct
        loss, correct = self.gradients(chip, feedback, x, y, chip.rule.code, grads,
                                       training=True)
        self.update(chip, state, grads, deltas)
        return loss, correct

    def stack_batches(self, batches: list, dtype: np.dtype):
        """The batches of a population step's chips (arrays or :class:`neurosim.rows.Rows`)
        as one ``A x batch x ...`` array of ``dtype``, for :meth:`population_step`: rows
        by :meth:`gather_rows`, arrays copied straight into their place (no per-chip
        intermediate arrays stacked afterwards: at hundreds of chips per step that was a
        tenth of a step)."""
        if all(isinstance(batch, Rows) for batch in batches):
            return self.gather_rows([batch.source for batch in batches],
                                    np.stack([batch.index for batch in batches]), dtype)
        first = gathered(batches[0])
        out = np.empty((len(batches), *np.shape(first)), dtype=dtype)
        out[0] = first
        for k in range(1, len(batches)):
            out[k] = gathered(batches[k])
        return out

    def gather_rows(self, sources: list[np.ndarray], index: np.ndarray, dtype: np.dtype):
        """Rows ``index[k]`` of ``sources[k]`` for every chip ``k`` of a population step,
        as one ``A x batch x ...`` array of ``dtype`` (one fancy index when every chip's
        rows come from one source, a dataset)."""
        first = sources[0]
        if all(source is first for source in sources):
            return np.asarray(first[index], dtype=dtype)
        out = np.empty((len(sources), index.shape[1], *first.shape[1:]), dtype=dtype)
        for k, source in enumerate(sources):
            out[k] = source[index[k]]
        return out

    def population_step(self, population: Population, states: list[OptimizerState],
                        active: list[int], x: np.ndarray, y: np.ndarray) -> list[tuple[float, int]]:
        """One training step of the chips ``active`` (indices) of ``population``: chip
        ``c = active[k]`` on its own batch ``x[k]``, ``y[k]`` (``x``: ``len(active) x batch
        x n_0``) with its optimizer ``states[c]``, each exactly :meth:`train_step` on that
        chip alone (into the population's ``grads[c]``, ``deltas[c]``). Returns each active
        chip's (summed loss, correct predictions)."""
        launched = self.launch_population_step(population, states, active, x, y)
        losses, correct = self.step_values([launched])[0]
        return list(zip(losses.tolist(), correct.tolist()))

    def launch_population_step(self, population: Population, states: list[OptimizerState],
                               active: list[int], x: np.ndarray, y: np.ndarray):
        """:meth:`population_step` without waiting for its results: they come back in the
        backend's own form (on a GPU, still being computed), for :meth:`step_values`. A
        driver launches many steps and waits once, so that the host prepares the next steps
        while the device computes.

        This implementation, the specification, loops over the chips; fast backends step
        them all in one call."""
        results = [self.train_step(population.chips[c], states[c], x[k], y[k],
                                   population.grads[c], population.deltas[c])
                   for k, c in enumerate(active)]
        return (np.array([loss for loss, _ in results], dtype=np.float64),
                np.array([correct for _, correct in results], dtype=np.int64))

    def population_logits(self, population: Population, members: list[int],
                          inputs: list) -> list[np.ndarray]:
        """The logits of the chips ``members`` (indices) of ``population``, chip
        ``c = members[k]`` on ``inputs[k]`` (arrays or :class:`neurosim.rows.Rows`, of one
        length; the same object where chips share an input), each exactly
        :meth:`logits` of that chip alone: one measurement pass, with its read-noise keys,
        the chips taking their keys in the order of ``members``.

        This implementation, the specification, loops over the chips; a fast backend
        measures them all in one call."""
        return [self.logits(population.chips[c], gathered(x)) for c, x in zip(members, inputs)]

    def population_gradients(self, population: Population, members: list[int], x: list,
                             y: list, rule_code: int) -> np.ndarray:
        """The gradients of rule ``rule_code`` (``len(members) x n_params``, the chips'
        dtype) of the chips ``members`` of ``population``, chip ``members[k]`` on its batch
        ``x[k]``, ``y[k]`` (arrays or :class:`neurosim.rows.Rows`), each exactly
        :meth:`gradients` of that chip alone with the feedback it applies now: one
        measurement pass, the chips taking their read-noise keys in the order of
        ``members``. This implementation, the specification, loops over the chips."""
        first = population.chips[0]
        out = np.zeros((len(members), first.n_params), dtype=first.dtype)
        for k, c in enumerate(members):
            chip = population.chips[c]
            self.gradients(chip, self.feedback_buffer(chip), gathered(x[k]), gathered(y[k]),
                           rule_code, out[k])
        return out

    def step_values(self, launched: list) -> list[tuple[np.ndarray, np.ndarray]]:
        """The summed losses and correct predictions (arrays over the active chips) of every
        step in ``launched`` (results of :meth:`launch_population_step`), waiting for them
        once. Here they are computed at launch."""
        return launched
