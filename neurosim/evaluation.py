"""The paper's metrics measured on a simulated chip (DESIGN §5).

Everything here reads the chip's *effective* weights ``W_l = alpha_l w_l`` and the feedback
matrices as the chip applies them, runs forward passes through the chip's backend, and
returns plain JSON-ready values. The metric formulas themselves are in
:mod:`neurosim.metrics`.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, nullcontext

import numpy as np

from neurosim import metrics, rng
from neurosim.accounting import count_measurement, unbooked_reads
from neurosim.backends.base import Backend
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.chip import Chip
from neurosim.devices import drift, drift_exponents
from neurosim.population import Population
from neurosim.rows import GradientProbe, Request, Rows

EVAL_CHUNK = 2048


def logits(chip: Chip, backend: Backend, x: np.ndarray) -> np.ndarray:
    """Output pre-activations for ``x``, computed in chunks of ``EVAL_CHUNK`` inputs, one
    measurement pass each (float64).

    Inference passes are what a chip does to measure its accuracy, so they are booked in
    the chip's ledger (stage ``eval``). Analyses only a simulator can make (the true BP
    gradient of :func:`gradients`, hidden representations, weight spectra,
    alignment) are not chip operations and are not booked."""
    parts = [backend.logits(chip, x[i:i + EVAL_CHUNK]).astype(np.float64)
             for i in range(0, len(x), EVAL_CHUNK)]
    count_measurement(chip, chip.ledger, len(x))
    return np.concatenate(parts) if parts else np.zeros((0, chip.dims[-1]))


def population_logits(population: Population, backend: Backend, members: list[int],
                      inputs: list) -> list[np.ndarray]:
    """:func:`logits` of the chips ``members`` (rows) of ``population``, chip
    ``members[k]`` on ``inputs[k]`` (arrays or :class:`neurosim.rows.Rows`, of one length),
    with one backend call per chunk for all of them
    (:meth:`neurosim.backends.base.Backend.population_logits`): each chip makes the passes
    it makes alone, in the same order (its read-noise keys, its ledger)."""
    n = len(inputs[0])
    parts: list[list[np.ndarray]] = [[] for _ in members]
    for i in range(0, n, EVAL_CHUNK):
        views: dict[int, object] = {}  # a chunk of an input shared by chips: one view
        chunk = [views.setdefault(id(x), _chunk_of(x, i)) for x in inputs]
        for part, out in zip(parts, backend.population_logits(population, members, chunk)):
            part.append(np.asarray(out, dtype=np.float64))
    for c in members:
        chip = population.chips[c]
        count_measurement(chip, chip.ledger, n)
    width = population.chips[0].dims[-1]
    return [np.concatenate(part) if part else np.zeros((0, width)) for part in parts]


def _chunk_of(x, start: int):
    """Inputs ``start .. start + EVAL_CHUNK - 1`` of an array or :class:`Rows`."""
    if isinstance(x, Rows):
        return Rows(x.source, x.index[start:start + EVAL_CHUNK])
    return x[start:start + EVAL_CHUNK]


def measure_population(population: Population, backend: Backend,
                       requests: list[tuple[int, Request]]
                       ) -> list[tuple[list, float]]:
    """The answer to every request ``(row, request)`` of chips of ``population``, as each
    chip's driver answers a :class:`Measurement` (logits) or a :class:`GradientProbe`
    (gradients): (the outputs, the seconds). Requests of one shape are measured together
    (:func:`population_logits`, :meth:`Backend.population_gradients`), their seconds the
    wall time of that, shared by their chips."""
    groups: dict[tuple, list[int]] = {}
    for k, (_, request) in enumerate(requests):
        groups.setdefault(request.shape(), []).append(k)
    answers: list = [None] * len(requests)
    for indices in groups.values():
        start = time.perf_counter()
        outputs = _measure_together(population, backend, [requests[k][0] for k in indices],
                                    [requests[k][1] for k in indices])
        seconds = time.perf_counter() - start
        for k, output in zip(indices, outputs):
            answers[k] = (output, seconds)
    return answers


def _measure_together(population: Population, backend: Backend, members: list[int],
                      requests: list[Request]) -> list[list]:
    """Each request's answer (without the seconds), requests of one shape of the chips
    ``members``."""
    first = requests[0]
    if isinstance(first, GradientProbe):
        x, y = [r.x for r in requests], [r.y for r in requests]
        outputs = []
        for rule, exact in first.passes:
            with ExitStack() as reads:
                for c in members:
                    if exact:
                        reads.enter_context(population.chips[c].reading_exactly())
                    reads.enter_context(unbooked_reads(population.chips[c]))
                outputs.append(backend.population_gradients(population, members, x, y, rule))
    else:
        outputs = [population_logits(population, backend, members,
                                     [r.inputs[j] for r in requests])
                   for j in range(len(first.inputs))]
    return [[out[k] for out in outputs] for k in range(len(members))]


def scores(out: np.ndarray, y: np.ndarray) -> dict:
    """Mean cross-entropy loss and accuracy (fraction) of logits ``out`` for labels ``y``."""
    return {"loss": metrics.cross_entropy(out, y), "accuracy": metrics.accuracy(out, y)}


def loss_and_accuracy(chip: Chip, backend: Backend, x: np.ndarray, y: np.ndarray) -> dict:
    """Mean cross-entropy loss and accuracy (fraction) on ``(x, y)``."""
    return scores(logits(chip, backend, x), y)


def readout_of(out: np.ndarray) -> dict:
    """Mean softmax output per class of logits ``out`` on a probe set, and its largest
    distance from 1/C; ``nan`` for a chip whose outputs are not all finite (diverged)."""
    if not np.all(np.isfinite(out)):
        return {"readout_probability": [float("nan")] * out.shape[1],
                "readout_max_deviation": float("nan")}
    probs = metrics.softmax(out)
    return {"readout_probability": metrics.readout_probability(probs).tolist(),
            "readout_max_deviation": metrics.readout_deviation_from_chance(probs)}


def readout(chip: Chip, backend: Backend, x: np.ndarray) -> dict:
    """:func:`readout_of` the chip's logits on ``x``."""
    return readout_of(logits(chip, backend, x))


def feedback_targets(chip: Chip) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(layer index, forward matrix to compare, feedback matrix) for every feedback array.

    FA-shaped ``B_l`` (``n_{l-1} x n_l``) is compared with ``W_l``. A direct rule's array
    ``B_l`` (DFA, SDFA, DRTP; ``n_l x n_L``) is compared with the linearized path from layer
    ``l`` to the output, ``W_L W_{L-1} ... W_{l+1}`` (``n_L x n_l``); for the last hidden
    layer that is ``W_L``. DRTP's feedback is compared as ``-B_l``, the matrix its target
    signal stands in for (:attr:`neurosim.rules.Rule.feedback_sign`): 90° is still
    orthogonal and 0° aligned.
    """
    weights = chip.effective_weights()
    targets = []
    for index, spec in enumerate(chip.feedback_specs):
        if spec is None:
            continue
        B = chip.rule.feedback_sign * chip.feedback_matrix(index)
        if chip.rule.direct:
            path = weights[-1]
            for W in reversed(weights[index + 1:-1]):
                path = path @ W
            targets.append((index, path, B))
        else:
            targets.append((index, weights[index], B))
    return targets


def alignment(chip: Chip) -> dict:
    """Layer alignment angles and per-neuron angle mean/std, degrees, per feedback array
    (the std over all the layer's neurons with a finite angle: population, ddof = 0).

    Keys are 1-based layer numbers as strings (``"2"`` is ``W_2`` vs ``B_2`` for FA).
    """
    layer, neuron_mean, neuron_std = {}, {}, {}
    for index, W, B in feedback_targets(chip):
        name = str(index + 1)
        layer[name] = metrics.alignment_angle(W, B)
        per_neuron = metrics.neuron_alignment_angles(W, B)
        per_neuron = per_neuron[np.isfinite(per_neuron)]
        neuron_mean[name] = float(per_neuron.mean()) if per_neuron.size else float("nan")
        neuron_std[name] = float(per_neuron.std()) if per_neuron.size else float("nan")
    return {"alignment_deg": layer, "neuron_alignment_mean_deg": neuron_mean,
            "neuron_alignment_std_deg": neuron_std}


def array_weights(chip: Chip) -> dict:
    """Where the forward arrays' devices sit: per layer (1-based keys), the mean and standard
    deviation (ddof = 0) of its normalized array weights ``w`` (the device's own units,
    bounds ``[w_min, w_max]``; the network weight is ``alpha_l w``). A noise phase's
    random-sign updates move the mean towards the devices' symmetry point
    (:mod:`neurosim.device_curves`)."""
    stats = {}
    for index in range(chip.n_layers):
        w = chip.weights(index).astype(np.float64)
        stats[str(index + 1)] = {"mean": float(w.mean()), "std": float(w.std())}
    return {"array_weights": stats, **array_pairs(chip)}


def array_pairs(chip: Chip) -> dict:
    """Where a chip's differential pairs (:mod:`neurosim.pair`) stand: per layer (1-based
    keys), the refresh checks made and pairs refreshed so far, and the mean fill of its G+
    and G- devices (state above G_min as a fraction of the range: SET-only pulses raise it,
    refreshes reset it); ``{}`` for a chip without pairs."""
    if chip.pairs is None:
        return {}
    stats = {}
    for index, pairs in enumerate(chip.pairs):
        plus, minus = pairs.fill()
        checks, refreshed = (int(v) for v in chip.refreshes[index])
        stats[str(index + 1)] = {"refresh_checks": checks, "pairs_refreshed": refreshed,
                                 "fill_plus": float(plus.mean()),
                                 "fill_minus": float(minus.mean())}
    return {"array_pairs": stats}


def array_references(chip: Chip) -> dict:
    """Where the forward devices' references sit (zero-shifting, :mod:`neurosim.reference`):
    per layer (1-based keys), the mean and standard deviation of the references in the
    devices' own units (the weight ``w`` is the device's minus its reference); ``{}`` for a
    chip without references."""
    if chip.devices is None or chip.devices[0].reference is None:
        return {}
    return {"array_references": {str(index + 1): {"mean": float(state.reference.mean()),
                                                  "std": float(state.reference.std())}
                                 for index, state in enumerate(chip.devices)}}


def neuron_angles(chip: Chip) -> dict[str, list[float]]:
    """Every hidden neuron's alignment angle (degrees), per feedback array."""
    return {str(index + 1): metrics.neuron_alignment_angles(W, B).tolist()
            for index, W, B in feedback_targets(chip)}


def gradients(chip: Chip, backend: Backend, x: np.ndarray, y: np.ndarray,
              rule_code: int, exact: bool = False) -> np.ndarray:
    """The gradient of rule ``rule_code`` on ``(x, y)`` (flat, the chip's layout and dtype)
    with the feedback the chip applies now: one measurement pass, not booked (an analysis
    only a simulator makes: BP's needs weight transport). Its reads go through the chip's
    periphery, or with ``exact`` are exact products (:meth:`Chip.reading_exactly`): BP's is
    then the true gradient of the loss of the weights the chip holds."""
    out = np.zeros(chip.n_params, dtype=chip.dtype)
    with chip.reading_exactly() if exact else nullcontext(), unbooked_reads(chip):
        backend.gradients(chip, backend.feedback_buffer(chip), x, y, rule_code, out)
    return out


def update_vs_backprop(chip: Chip, rule_grads: np.ndarray, bp_grads: np.ndarray) -> dict:
    """Angle (degrees) between each layer's rule gradient ``rule_grads``, as the chip
    computes it, and the true BP gradient ``bp_grads`` (exact reads) on one batch
    (:func:`gradients`): 0 for every layer under BP and for the output layer under any
    rule when the chip reads exactly; with a noisy or quantizing periphery, what it makes
    of the gradient."""
    angles = {}
    for index, (w_off, n_out, n_in, _) in enumerate(chip.layout):
        part = slice(w_off, w_off + n_out * n_in)
        angles[str(index + 1)] = metrics.angle_between(rule_grads[part], bp_grads[part])
    return {"update_vs_bp_deg": angles}


def weight_spectra(chip: Chip) -> dict:
    """Singular values (descending) and effective rank (Roy & Vetterli 2007) of every
    ``W_l``, from one SVD each; ``None`` and nan for a matrix with nan or inf."""
    ranks, spectra = {}, {}
    for i, W in enumerate(chip.effective_weights()):
        name = str(i + 1)
        if np.all(np.isfinite(W)):
            s = metrics.singular_values(W)
            ranks[name], spectra[name] = metrics.spectrum_effective_rank(s, W.shape), s.tolist()
        else:
            ranks[name], spectra[name] = float("nan"), None
    return {"effective_rank": ranks, "singular_values": spectra}


def hidden_representations(chip: Chip, x: np.ndarray) -> list[np.ndarray]:
    """Hidden activations ``h_1 .. h_{L-1}`` on ``x`` (float64), by the reference forward."""
    with unbooked_reads(chip):
        _, post = NumpyBackend(chip.dtype.name).forward_layers(chip, x.astype(chip.dtype))
    return [h.astype(np.float64) for h in post[1:-1]]


def representation_rank(chip: Chip, x: np.ndarray) -> dict:
    """Effective rank of the cosine-similarity Gram matrix of each hidden layer on ``x``."""
    return {"gram_effective_rank": {str(i + 1): metrics.gram_effective_rank(h)
                                    for i, h in enumerate(hidden_representations(chip, x))}}


def drift_accuracy(chip: Chip, backend: Backend, x: np.ndarray, y: np.ndarray,
                   times_s: tuple[float, ...]) -> dict:
    """Test accuracy with the forward arrays read ``t`` seconds after their last
    programming, for every ``t`` in ``times_s``: each weight reads
    ``w (max(t, t0) / t0)^-nu_i`` (:func:`neurosim.devices.drift`; per-device exponents
    ``nu_i`` of the device model, drawn once from the chip seed). Biases are digital and do
    not drift. The chip is left as it was. Keys are ``t`` in seconds (``"%g"``)."""
    device = chip.config.forward.device
    if not times_s:
        return {}
    saved = chip.params.copy()
    exponents = [drift_exponents(device.drift_nu, device.drift_nu_dtod, int(n_out * n_in),
                                 rng.stream_key(chip.seed, 0, index, rng.Purpose.DEVICE_DRIFT))
                 for index, (_, n_out, n_in, _) in enumerate(chip.layout)]
    accuracies = {}
    try:
        for t in times_s:
            for index, nu in enumerate(exponents):
                w = saved[chip.layout[index, 0]:][:nu.size]
                chip.weights(index).reshape(-1)[:] = drift(w, t, device.drift_t0_s, nu)
            accuracies[f"{t:g}"] = loss_and_accuracy(chip, backend, x, y)["accuracy"]
    finally:
        chip.params[:] = saved
    return {"drift_accuracy": accuracies}
