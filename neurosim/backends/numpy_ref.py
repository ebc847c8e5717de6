"""The NumPy reference backend: plain, obvious code; the executable specification.

Every fast kernel is tested against this module. It favours readability over speed: one
layer at a time, the equations of DESIGN §3 written as they are.
"""

from __future__ import annotations

import numpy as np

from neurosim import devices, periphery, rng
from neurosim.backends.base import Backend
from neurosim.chip import Chip, draw_feedback_numpy
from neurosim.optimizers import OptimizerState
from neurosim.rules import RuleCode


def activation(a: np.ndarray, code: int) -> np.ndarray:
    """Hidden activation ``f``: ReLU (code 0) or tanh (code 1)."""
    return np.maximum(a, 0) if code == 0 else np.tanh(a)


def activation_derivative(a: np.ndarray, h: np.ndarray, code: int) -> np.ndarray:
    """``f'(a)``: ReLU ``[a > 0]``; tanh ``1 - h^2``."""
    return (a > 0).astype(a.dtype) if code == 0 else 1 - h * h


def log_softmax(a: np.ndarray) -> np.ndarray:
    shifted = a - a.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def read(w: np.ndarray, x: np.ndarray, config: periphery.PeripheryConfig, key,
         tiles: tuple[int, int], transposed: bool = False,
         rereads: np.ndarray | None = None) -> np.ndarray:
    """A read of array ``w`` (cut into ``tiles``: rows x cols of a tile) with inputs ``x``
    (``x @ w.T``; ``transposed``: ``x @ w``) through the periphery; a plain product when
    the periphery is ideal. Re-reads of iterative bound management are added to
    ``rereads`` (a row of :attr:`Chip.rereads`)."""
    if config.is_ideal:
        return x @ w if transposed else x @ w.T
    model = periphery.transposed_read if transposed else periphery.read
    return model(w, x, config, int(key), tiles=tiles, rereads=rereads)


class NumpyBackend(Backend):
    name = "numpy"
    device_kernels = devices

    def uniform(self, key: int, n: int) -> np.ndarray:
        return rng.uniform(key, n)

    def normal(self, key: int, n: int) -> np.ndarray:
        return rng.normal(key, n)

    def regenerate_feedback(self, chip: Chip, out: np.ndarray) -> None:
        out[:] = draw_feedback_numpy(chip.feedback_specs, out.size)

    def forward_layers(self, chip: Chip, x: np.ndarray,
                       keys: np.ndarray | None = None,
                       rereads: np.ndarray | None = None) -> tuple[list, list]:
        """Pre-activations ``a_l`` and activations ``h_l`` (``h_0 = x``; ``h_L = a_L``).
        ``keys``: :meth:`Chip.read_keys` of this pass (default: a measurement pass);
        ``rereads``: where its re-reads are counted (``Chip.rereads[pass]``; default: a
        measurement pass's, with the default keys; else not counted)."""
        if keys is None:
            keys = chip.read_keys(training=False)
            rereads = chip.rereads[1] if rereads is None else rereads
        pre, post = [], [x]
        for l in range(chip.n_layers):
            # The array computes w x in its own units; the periphery scales by alpha.
            y = read(chip.weights(l), post[-1], chip.forward_periphery, keys[l, 0],
                     chip.tiles, rereads=None if rereads is None else rereads[0, l])
            a = chip.alphas_typed[l] * y + chip.bias(l)
            pre.append(a)
            post.append(a if l == chip.n_layers - 1 else activation(a, chip.activation_code))
        return pre, post

    def logits(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        return self.forward_layers(chip, x.astype(chip.dtype, copy=False))[0][-1]

    def local_signals(self, chip, feedback, x, y, rule_code, training=False):
        x = x.astype(chip.dtype, copy=False)
        keys = chip.read_keys(training)
        rereads = chip.rereads[int(not training), 1]  # the backward reads'
        pre, post = self.forward_layers(chip, x, keys, chip.rereads[int(not training)])
        batch = x.shape[0]
        logp = log_softmax(pre[-1])
        loss = -float(logp[np.arange(batch), y].sum())
        correct = int((pre[-1].argmax(axis=1) == y).sum())
        onehot = np.zeros_like(pre[-1])
        onehot[np.arange(batch), y] = 1
        # Each sample's error dLoss_b/da_L = softmax - onehot goes through the backward
        # reads as it is (the DAC and ADC ranges are set for a sample's signal); the 1/batch
        # of the batch mean is digital, applied to every delta once the reads are done.
        e = np.exp(logp) - onehot
        deltas = [e]
        for l in range(chip.n_layers - 1, 0, -1):
            delta = deltas[0]
            if rule_code == RuleCode.BP:  # weight transport: the forward array, transposed
                signal = chip.alphas_typed[l] * read(chip.weights(l), delta,
                                                     chip.forward_periphery, keys[l, 1],
                                                     chip.tiles, transposed=True,
                                                     rereads=rereads[l])
            else:  # FA: B_l delta_l; direct rules: an output signal projected to layer l-1
                index, source = ((l, delta) if rule_code == RuleCode.FA
                                 else (l - 1, direct_signal(rule_code, e, onehot)))
                B = self._feedback(chip, feedback, index)
                if chip.feedback_kind == "regenerated":  # digital logic, exact
                    signal = source @ B.T
                else:
                    signal = read(B, source, chip.feedback_periphery, keys[index, 2],
                                  chip.tiles, rereads=rereads[index])
            deltas.insert(0, signal * activation_derivative(pre[l - 1], post[l],
                                                            chip.activation_code))
        count = chip.dtype.type(batch)
        return loss, correct, post[:-1], [delta / count for delta in deltas]

    def gradients(self, chip, feedback, x, y, rule_code, out, training=False):
        loss, correct, inputs, deltas = self.local_signals(chip, feedback, x, y, rule_code,
                                                           training)
        for l, (h, delta) in enumerate(zip(inputs, deltas)):
            w_off, n_out, n_in, b_off = chip.layout[l]
            out[w_off:w_off + n_out * n_in] = (delta.T @ h).ravel()
            out[b_off:b_off + n_out] = delta.sum(axis=0)
        return loss, correct

    @staticmethod
    def _feedback(chip: Chip, feedback: np.ndarray, index: int) -> np.ndarray:
        offset, rows, cols = chip.feedback_layout[index]
        return feedback[offset:offset + rows * cols].reshape(rows, cols)

    def optimizer_step(self, state: OptimizerState, grads, out):
        cfg = state.config
        if cfg.name == "adam":
            t = grads.dtype.type
            step_size, inverse_sqrt_c2 = state.adam_scalars()
            state.m[:] = t(cfg.beta1) * state.m + t(1 - cfg.beta1) * grads
            state.v[:] = t(cfg.beta2) * state.v + t(1 - cfg.beta2) * grads * grads
            out[:] = (-t(step_size) * state.m) / (np.sqrt(state.v) * t(inverse_sqrt_c2)
                                                  + t(cfg.eps))
        elif cfg.momentum > 0:
            t = grads.dtype.type
            state.m[:] = t(cfg.momentum) * state.m + grads
            out[:] = -t(cfg.lr) * state.m
        else:
            out[:] = -grads.dtype.type(cfg.lr) * grads
        state.step += 1

    def apply_ideal_update(self, chip: Chip, deltas):
        for l in range(chip.n_layers):
            w_off, n_out, n_in, b_off = chip.layout[l]
            w = chip.weights(l)
            dw = deltas[w_off:w_off + n_out * n_in].reshape(n_out, n_in) * chip.inverse_alphas_typed[l]
            np.clip(w + dw, chip.bounds_typed[l, 0], chip.bounds_typed[l, 1], out=w)
            chip.bias(l)[:] += deltas[b_off:b_off + n_out]


def direct_signal(rule_code: int, e: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """What a direct rule's feedback arrays read (:mod:`neurosim.rules`): the output error
    ``e`` (DFA), its sign (SDFA) or the one-hot target (DRTP)."""
    if rule_code == RuleCode.SDFA:
        return np.sign(e)
    return onehot if rule_code == RuleCode.DRTP else e
