"""One run: build the chip, precondition it on noise, train it on data, evaluate it.

Policy lives here (what happens when); arithmetic lives in the backend and state in the
chip. A training step is the same in both phases::

    g  = rule gradient on the batch              (backend.gradients)
    dW = optimizer(g)                            (digital periphery; in backend.update)
    the forward arrays realize dW                (backend.update: ideal or pulsed)

or, for in-array updates (``stochastic``), the layers' local signals drive pulse trains
in the arrays (backend.local_signals, backend.apply_stochastic_update).

Evaluation points: the noise phase is logged every ``log_every`` steps; data training is
evaluated at epoch 0, at the fractional epochs of ``evaluation.fractional_epochs`` and at
the end of every epoch. The run checkpoints atomically (every ``checkpoint_every`` epochs
and every ``precondition.checkpoint_every`` noise steps, always at a logging point: rounded
up to a multiple of ``evaluation.every_epochs`` or of ``log_every``) and ``resume=True``
continues from the last checkpoint to the identical result.

A run is a generator of its training steps (:meth:`Trainer.steps`), handed over a segment
at a time (the steps up to the next evaluation point, :class:`neurosim.rows.Segment`): the
trainer decides what happens between segments, its driver computes the steps:
:meth:`Trainer.run` one chip at a time, :func:`run_population` the steps of many chips (a
population: runs that share their hardware, whatever their seeds and conditions) in one
backend call each (:mod:`neurosim.cohorts`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neurosim import evaluation, rng
from neurosim.accounting import StepAccounting, activation_buffer, converter_bits
from neurosim.backends import Backend, create_backend
from neurosim.cohorts import Cohorts
from neurosim.chip import Chip
from neurosim.config import RunSpec
from neurosim.data import Dataset, load_dataset
from neurosim.energy import ledger_summary, stage_totals
from neurosim.errors import CheckpointError, ConfigError
from neurosim.memory import check_population_fits
from neurosim.optimizers import OptimizerState
from neurosim.population import Population, call_key
from neurosim.precondition import NoiseSource
from neurosim.rows import (EpochOrder, GradientProbe, Measurement, Request, Rows, Segment,
                           gathered, step_rows)
from neurosim.rules import RuleCode, get_rule
from neurosim.ood_eval import ood_accuracies, ood_notes, ood_test_sets
from neurosim.runio import CHECKPOINT, METRICS, MetricLog, load_checkpoint, save_checkpoint
from neurosim.summary import summarize, trained_samples



def evaluation_steps(steps_per_epoch: int, epochs: int, fractions: tuple[float, ...],
                     per_epoch: int = 1, every_epochs: int = 1) -> list[int]:
    """Sorted distinct step counts at which data training is evaluated (0 included):
    ``per_epoch`` evenly spaced points (its end included) in every ``every_epochs``-th
    epoch and in the last one, and the ``fractions`` and the end of epoch 1 (the first-epoch
    AUC is measured there, whatever ``every_epochs``, never interpolated across a gap).

    Point ``k`` of the ``per_epoch`` is at step ``round(k S / per_epoch)`` and fraction ``f``
    at ``round(f S)``, ``S = steps_per_epoch`` (an epoch's short last batch a step), rounded
    to the nearest step, ties to the even one (Python's ``round``): a fraction under half a
    step is step 0, the evaluation before training."""
    last = epochs * per_epoch
    points = {0} | {int(round(k * steps_per_epoch / per_epoch)) for k in range(1, last + 1)
                    if -(-k // per_epoch) % every_epochs == 0 or k == last}
    if epochs >= 1:
        points |= {int(round(f * steps_per_epoch)) for f in fractions} | {steps_per_epoch}
    return sorted(points)


@dataclass
class Position:
    """Where a run is: its phase and the steps done in it (what a checkpoint restores)."""

    phase: str = "precondition"
    step: int = 0
    seconds: dict = field(default_factory=lambda: {"precondition": 0.0, "train": 0.0,
                                                    "evaluation": 0.0})
    results: dict = field(default_factory=dict)  # one-off measurements kept for the summary


class Trainer:
    """Runs one :class:`RunSpec` into ``run_dir`` (see the module docstring)."""

    def __init__(self, spec: RunSpec, run_dir: Path, backend: Backend | None = None,
                 progress: bool = False, data_dir: str | None = None):
        self.spec = spec
        self.experiment = spec.experiment
        self.run_dir = Path(run_dir)
        self.backend = backend or create_backend(self.experiment.simulation)
        self.progress = progress
        self.data_dir = data_dir
        # Loaded now, not when the data phase needs it: missing or corrupt files, or a size
        # the dataset cannot give, are refused before minutes of noise-phase training.
        self.dataset = self._load_dataset()
        self.chip = Chip(spec.chip, self.experiment.network, get_rule(self.experiment.rule),
                         spec.seed, self.experiment.simulation.dtype)
        self.grads = np.zeros(self.chip.n_params, dtype=self.chip.dtype)
        self.deltas = np.zeros_like(self.grads)
        self.log = MetricLog(self.run_dir / METRICS)
        self.accounting = StepAccounting(self.chip, self.chip.ledger)
        self.position = Position()
        self._clock = 0.0  # time of the last mark of _timed (perf_counter seconds)
        pre = self.experiment.precondition
        self.noise = NoiseSource(pre, self.backend, spec.seed, self.dataset.image_shape,
                                 self.chip.dims[-1], self.chip.dtype)
        self.noise_probe = self.noise.probe(self.experiment.evaluation.noise_probe_size)
        self.optimizer = self._new_optimizer("precondition" if pre.enabled else "train")
        self._ood_sets: list | None = None
        self._bar: tqdm | None = None  # the progress bar of steps() while it runs
        self._bar_ahead = 0  # steps of the current segment it shows already (run())

    # ------------------------------------------------------------------ pieces
    def _load_dataset(self) -> Dataset:
        """The run's dataset, and the rows of its training and gradient probes."""
        data = self.experiment.data
        try:
            dataset = load_dataset(data.dataset, self.data_dir,
                                   train_size=data.train_size, test_size=data.test_size)
        except ConfigError as error:  # a size the dataset cannot provide
            raise ConfigError(f"experiment {self.experiment.name}", f"data.{error.path}",
                              error.value, error.allowed) from None
        probe = rng.permutation(rng.stream_key(self.spec.seed, 0, 0, rng.Purpose.PROBE_SELECTION),
                                len(dataset.y_train))
        self._train_probe = probe[:self.experiment.evaluation.train_probe_size]
        self._gradient_probe = probe[:self.experiment.evaluation.gradient_probe_size]
        return dataset

    def _new_optimizer(self, phase: str) -> OptimizerState:
        config = self.experiment.optimizer
        if phase == "precondition" and self.experiment.precondition.optimizer is not None:
            config = self.experiment.precondition.optimizer
        return OptimizerState.create(config, self.chip.n_params, self.chip.dtype)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One training step of this chip alone on a batch (:meth:`Backend.train_step`);
        returns (summed loss, correct predictions)."""
        return self.backend.train_step(self.chip, self.optimizer, gathered(x), gathered(y),
                                       self.grads, self.deltas)

    def _segment(self, segment: Segment) -> Generator:
        """The steps of ``segment``, run by the driver of :meth:`steps`: books them, hands
        the segment over and takes back each step's summed loss and correct predictions
        and the seconds the steps took, which go to the phase's time (the trainer's own
        time up to here too; the time it waits for the driver does not count)."""
        self.accounting.step(segment.batch_size, len(segment))
        self._timed(segment.phase)
        losses, correct, seconds = yield segment
        self._clock = time.perf_counter()
        self._bar.update(len(segment) - self._bar_ahead)  # what run() has not shown
        self._bar_ahead = 0
        self.position.seconds[segment.phase] += seconds
        self.position.step += len(segment)
        return losses, correct

    def _answer(self, request: Request) -> list[np.ndarray]:
        """What :meth:`run` answers to a request of :meth:`steps`: the chip's logits on
        each input, or its gradient of each rule on the probe batch."""
        if isinstance(request, GradientProbe):
            x, y = gathered(request.x), gathered(request.y)
            return [evaluation.gradients(self.chip, self.backend, x, y, rule, exact)
                    for rule, exact in request.passes]
        return [evaluation.logits(self.chip, self.backend, gathered(x))
                for x in request.inputs]

    def _measure(self, request: Request) -> Generator:
        """The answer to ``request`` (the chip's logits on inputs, or gradients on a probe
        batch), made by the driver of :meth:`steps`; the seconds it took go to the
        evaluation time (the trainer's own time up to here too; the time it waits for
        the driver does not count)."""
        self._timed("evaluation")
        outputs, seconds = yield request
        self._clock = time.perf_counter()
        self.position.seconds["evaluation"] += seconds
        return outputs

    # ------------------------------------------------------------- checkpoints
    def _checkpoint(self) -> None:
        self.accounting.flush()
        arrays = {f"chip_{k}": v for k, v in self.chip.state().items()}
        arrays.update({f"optimizer_{k}": v for k, v in self.optimizer.state().items()})
        meta = {"phase": self.position.phase, "step": self.position.step,
                "seconds": self.position.seconds, "results": self.position.results,
                "n_records": len(self.log.records), "seed": self.spec.seed,
                "condition": self.spec.condition}
        save_checkpoint(self.run_dir / CHECKPOINT, arrays, meta)

    def _restore(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        arrays, meta = load_checkpoint(path)
        if meta.get("seed") != self.spec.seed or meta.get("condition") != self.spec.condition:
            raise CheckpointError(f"{path}: belongs to condition {meta.get('condition')} seed "
                                  f"{meta.get('seed')}, not {self.spec.condition} seed "
                                  f"{self.spec.seed}")
        self.chip.load_state({k[len("chip_"):]: v for k, v in arrays.items()
                              if k.startswith("chip_")})
        self.optimizer = self._new_optimizer(meta["phase"])
        self.optimizer.load_state({k[len("optimizer_"):]: v for k, v in arrays.items()
                                   if k.startswith("optimizer_")})
        self.accounting = StepAccounting(self.chip, self.chip.ledger)
        self.position = Position(meta["phase"], meta["step"], meta["seconds"], meta["results"])
        self.log.restore(meta["n_records"])
        return True

    # ------------------------------------------------------------------- phases
    def run(self, resume: bool = False) -> dict:
        """Run to the end (or continue from the checkpoint) and return the summary."""
        steps = self.steps(resume)
        result = None
        while (segment := advance(steps, result)) is not None:
            start = time.perf_counter()
            if isinstance(segment, Request):  # not a segment
                result = self._answer(segment), time.perf_counter() - start
                continue
            losses, correct = [], []
            for j in range(len(segment)):
                loss, hits = self.step(*segment.batch(j))
                losses.append(loss)
                correct.append(hits)
                self._bar.update(1)  # a single run's progress, step by step
                self._bar_ahead += 1
            result = losses, correct, time.perf_counter() - start
        return self._finish()

    def steps(self, resume: bool = False) -> Generator:
        """The run up to its summary as a generator of its training steps, a
        :class:`neurosim.rows.Segment` at a time (the steps up to the next evaluation
        point): yields a segment and takes back its steps' summed losses, correct
        predictions (lists, step after step) and the seconds they took, computed by
        whoever drives it (:meth:`run`: :meth:`step`; :func:`run_population`: one call for
        many chips per step). At an evaluation point it yields the inputs of its
        measurement passes (:class:`neurosim.rows.Measurement`) and its gradient probe
        (:class:`neurosim.rows.GradientProbe`), and takes back the chip's logits or
        gradients and the seconds they took (:meth:`run`: :meth:`_answer`;
        :func:`run_population`: one call for the chips at the same point,
        :func:`neurosim.evaluation.measure_population`).
        Everything else between segments (metrics, records, checkpoints) happens here;
        :meth:`_finish` follows."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and self._restore()):
            self.log.reset()
            self.position = Position()
            if not self.experiment.precondition.enabled:
                self.position.phase = "train"
        total = self._total_steps()
        # disable=None: tqdm shows the bar only on a terminal (clean logs elsewhere).
        with tqdm(total=total, disable=None if self.progress else True, unit="step", leave=False,
                  desc=f"{self.spec.condition}/seed{self.spec.seed}") as self._bar:
            self._bar.update(self._steps_done())
            if self.position.phase == "precondition":
                yield from self._precondition()
            if self.position.phase == "train":
                yield from self._train()

    def _total_steps(self) -> int:
        pre = self.experiment.precondition.steps if self.experiment.precondition.enabled else 0
        train = self.experiment.train.epochs * self._steps_per_epoch() if self.experiment.train.epochs else 0
        return pre + train

    def _steps_done(self) -> int:
        pre = self.experiment.precondition.steps if self.experiment.precondition.enabled else 0
        if self.position.phase == "precondition":
            return self.position.step
        return pre + (self.position.step if self.position.phase == "train" else self._total_steps() - pre)

    @property
    def largest_training_batch(self) -> int:
        """The most samples one training step updates from: the noise phase's batch or the
        data's (0 when the run trains on neither)."""
        pre = self.experiment.precondition
        noise = pre.batch_size if pre.enabled and pre.steps else 0
        return max(noise, self.experiment.train.batch_size if self.experiment.train.epochs else 0)

    def _steps_per_epoch(self) -> int:
        return -(-len(self.dataset.y_train) // self.experiment.train.batch_size)

    def _timed(self, key: str) -> None:
        """Book the time since the last mark (``_clock``) to ``key``; mark now."""
        now = time.perf_counter()
        self.position.seconds[key] += now - self._clock
        self._clock = now

    def _energy_so_far(self, stage: str) -> dict:
        """Cumulative ``energy_pj``, ``pulses`` and ``bytes`` of ``stage`` (ledger)."""
        self.accounting.flush()
        return stage_totals(self.chip.ledger.counts, stage, self.chip.config.energy,
                            *converter_bits(self.chip))

    def _noise_record(self, step: int, loss_sum: float, correct: int, count: int) -> Generator:
        energy = self._energy_so_far("precondition")
        x, y = self.noise_probe
        (out,) = yield from self._measure(Measurement((x,)))
        probe = evaluation.scores(out, y)
        n = self.experiment.evaluation.gradient_probe_size
        gradients = yield from self._measure(self._gradient_probe_of(x[:n], y[:n]))
        self.log.append({
            "phase": "precondition", "step": step,
            "batch_loss": loss_sum / count if count else None,
            "batch_accuracy": correct / count if count else None,
            "probe_loss": probe["loss"], "probe_accuracy": probe["accuracy"], **energy,
            **evaluation.alignment(self.chip),
            **evaluation.update_vs_backprop(self.chip, *gradients),
            **evaluation.weight_spectra(self.chip)})

    def _gradient_probe_of(self, x, y) -> GradientProbe:
        """The rule's gradient on ``(x, y)`` as the chip computes it (its reads as they
        are) and the true BP gradient of the weights it holds (exact reads), to compare."""
        return GradientProbe(x, y, ((self.chip.rule.code, False), (RuleCode.BP, True)))

    def _precondition(self) -> Generator:
        config = self.experiment.precondition
        results = self.position.results
        self._clock = time.perf_counter()
        self.accounting.begin("precondition", self._new_optimizer("precondition").config)
        if self.position.step == 0:
            self.accounting.add_work("forward", 0, self.noise.example_counts(),
                                     self.noise.setup_examples())
            results["precondition_before"] = yield from self._precondition_result()
            yield from self._noise_record(0, 0.0, 0, 0)
        self._timed("evaluation")
        loss_sum, correct, count = 0.0, 0, 0
        checkpoint_every = config.log_every * -(-config.checkpoint_every // config.log_every)
        example_counts = self.noise.example_counts()
        examples_per_batch = self.noise.examples_per_batch()
        done = self.position.step
        while done < config.steps:
            segment = self.noise.segment(
                done, min(config.steps, (done // config.log_every + 1) * config.log_every))
            self.accounting.add_work("forward", 0, example_counts,
                                     examples_per_batch * len(segment))
            losses, hits = yield from self._segment(segment)
            for loss in losses:  # step after step, as the losses came
                loss_sum += loss
            correct, count = correct + sum(hits), count + segment.batch_size * len(segment)
            done += len(segment)
            if done % config.log_every == 0 or done == config.steps:
                self._timed("precondition")
                yield from self._noise_record(done, loss_sum, correct, count)
                loss_sum, correct, count = 0.0, 0, 0
                if done % checkpoint_every == 0 and done < config.steps:
                    self._checkpoint()
                self._timed("evaluation")
        results["precondition_after"] = yield from self._precondition_result()
        self._timed("evaluation")
        self.position.phase, self.position.step = "train", 0
        self.optimizer = self._new_optimizer("train")
        self._checkpoint()

    def _precondition_result(self) -> Generator:
        """What the noise phase did to the chip, measured before and after it: alignment,
        readout on the noise probe, every hidden neuron's angle, where the array weights
        sit."""
        (out,) = yield from self._measure(Measurement((self.noise_probe[0],)))
        return {**evaluation.alignment(self.chip), **evaluation.readout_of(out),
                "neuron_angles": evaluation.neuron_angles(self.chip),
                **evaluation.array_weights(self.chip)}

    def _data_record(self, step: int, loss_sum: float, correct: int, count: int) -> Generator:
        energy = self._energy_so_far("train")
        data = self.dataset
        test_out, train_out = yield from self._measure(Measurement(
            (data.x_test, Rows(data.x_train, self._train_probe))))
        test = evaluation.scores(test_out, data.y_test)
        train = evaluation.scores(train_out, data.y_train[self._train_probe])
        ood = self._ood_record()  # measurement passes of their own, before the gradients'
        gradients = yield from self._measure(self._gradient_probe_of(
            Rows(data.x_train, self._gradient_probe), Rows(data.y_train, self._gradient_probe)))
        self.log.append({
            "phase": "train", "step": step, "epoch": step / self._steps_per_epoch(),
            "batch_loss": loss_sum / count if count else None,
            "batch_accuracy": correct / count if count else None,
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "generalization_gap": test["loss"] - train["loss"], **energy,
            "error_gap": train["accuracy"] - test["accuracy"], **ood,
            **evaluation.alignment(self.chip),
            **evaluation.update_vs_backprop(self.chip, *gradients),
            **evaluation.weight_spectra(self.chip)})

    def _ood_record(self) -> dict:
        """``ood_accuracy`` per OOD set at this evaluation point, when
        ``evaluation.ood_during_training`` (the transformed sets are made once)."""
        config = self.experiment.evaluation
        if not config.ood_during_training:
            return {}
        if self._ood_sets is None:
            self._ood_sets = [(name, x, y) for name, x, y in
                              ood_test_sets(self.dataset, config, self.data_dir)
                              if x is not None]
        accuracies = ood_accuracies(self.chip, self.backend, self.dataset, config,
                                    self.data_dir, self._ood_sets)
        accuracies.pop("in_distribution")
        return {"ood_accuracy": accuracies}

    def _train(self) -> Generator:
        config = self.experiment.train
        data = self.dataset
        steps_per_epoch = self._steps_per_epoch()
        evaluation_config = self.experiment.evaluation
        points = set(evaluation_steps(steps_per_epoch, config.epochs,
                                      evaluation_config.fractional_epochs,
                                      evaluation_config.points_per_epoch,
                                      evaluation_config.every_epochs))
        self._clock = time.perf_counter()
        self.accounting.begin("train", self.experiment.optimizer)
        if self.position.step == 0:
            yield from self._data_record(0, 0.0, 0, 0)
        self._timed("evaluation")
        loss_sum, correct, count = 0.0, 0, 0
        order = EpochOrder(self.spec.seed, rng.Purpose.DATA_SHUFFLE, len(data.y_train))
        done, total = self.position.step, config.epochs * steps_per_epoch
        spacing = evaluation_config.every_epochs  # checkpoints only at evaluated epoch ends
        checkpoint_steps = steps_per_epoch * spacing * -(-config.checkpoint_every // spacing)
        while done < total:
            stop = min(point for point in points | {total} if point > done)
            segment = Segment.of_rows("train", done, data.x_train, data.y_train,
                                      step_rows(done, stop, config.batch_size, order))
            losses, hits = yield from self._segment(segment)
            for loss in losses:  # step after step, as the losses came
                loss_sum += loss
            correct, count = correct + sum(hits), count + segment.batch_size * len(segment)
            done += len(segment)
            if done in points:
                self._timed("train")
                yield from self._data_record(done, loss_sum, correct, count)
                loss_sum, correct, count = 0.0, 0, 0
                if done % checkpoint_steps == 0:
                    self._checkpoint()
                self._timed("evaluation")
        self.position.phase = "done"
        self._timed("train")

    # ------------------------------------------------------------------ summary
    def _finish(self) -> dict:
        self._clock = time.perf_counter()
        results = self.position.results
        if "final" not in results:
            data = self.dataset
            results["final"] = {
                **evaluation.readout(self.chip, self.backend, self.noise_probe[0]),
                "test_readout_probability": evaluation.readout(
                    self.chip, self.backend, data.x_test)["readout_probability"],
                **evaluation.representation_rank(
                    self.chip, data.x_test[:self.experiment.evaluation.train_probe_size]),
                "neuron_angles": evaluation.neuron_angles(self.chip),
                **evaluation.array_weights(self.chip),
                **evaluation.array_references(self.chip),
                "pulses_up": self.chip.pulses[:, 0].tolist(),
                "pulses_down": self.chip.pulses[:, 1].tolist(),
                "ood": ood_accuracies(self.chip, self.backend, data,
                                      self.experiment.evaluation, self.data_dir),
                **evaluation.drift_accuracy(self.chip, self.backend, data.x_test,
                                            data.y_test,
                                            self.experiment.evaluation.drift_times_s),
            }
            results["data_notes"] = list(data.notes) + ood_notes(
                data, self.experiment.evaluation, self.data_dir)
            self.accounting.flush()
            results["ledger"] = ledger_summary(
                self.chip.ledger, self.chip.config.energy, *converter_bits(self.chip),
                self.log.records, self.experiment.evaluation.energy_target)
            results["ledger"]["activation_buffer"] = activation_buffer(
                self.chip, self.largest_training_batch)
            results["final"]["programming_events"] = programming_events(self.chip,
                                                                        results["ledger"])
            self._timed("evaluation")
            self._checkpoint()
        return summarize(self.spec, self.log.records, results, self.position.seconds,
                         self.backend.name)


def programming_events(chip: Chip, ledger: dict) -> int:
    """Programming events of the chip's forward arrays so far (DESIGN §2): one per training
    step in the batch modes (ideal, pulsed), one per sample in-array (stochastic), so there
    the samples its training steps went through (:func:`trained_samples` of ``ledger``, a
    :func:`ledger_summary`)."""
    if chip.update_mode != "stochastic":
        return chip.update_count
    return sum(trained_samples(ledger, phase, list(chip.dims))
               for phase in ("precondition", "train"))


def advance(steps: Generator, result: tuple | None) -> Segment | Request | None:
    """The next segment (or measurement request) of a run's :meth:`Trainer.steps` after sending
    it the last one's ``result`` (``None``: start it), or ``None`` when the run has no more
    steps."""
    try:
        return next(steps) if result is None else steps.send(result)
    except StopIteration:
        return None


def run_spec(spec: RunSpec, run_dir: Path, resume: bool = False, progress: bool = False,
             data_dir: str | None = None) -> dict:
    """Run (or resume) one run into ``run_dir``; returns its summary. A run that cannot fit
    in memory is refused before it starts (:func:`neurosim.memory.check_population_fits`)."""
    check_population_fits([spec])
    return Trainer(spec, run_dir, progress=progress, data_dir=data_dir).run(resume=resume)


def run_population(specs: list[RunSpec], run_dirs: list[Path], resume: bool = False,
                   data_dir: str | None = None,
                   on_error: Callable[[int, Exception], None] | None = None) -> list[dict | None]:
    """Run (or resume) the runs ``specs`` into ``run_dirs`` as one population of chips
    (:mod:`neurosim.population`); returns their summaries.

    A population that cannot fit in memory is refused before it starts
    (:func:`neurosim.memory.check_population_fits`). An error of one run (its
    configuration, data, checkpoint, evaluation) is raised, or with ``on_error`` handed to
    ``on_error(index, error)`` while the other runs go on (the failed run's summary is
    ``None``). An error of a population step or of a measurement
    of several chips together is raised.

    The runs must share their chip, network, rule and simulation
    (:attr:`RunSpec.population_key`); they may differ in seed and in anything else:
    preconditioning (on or off, noise, length, optimizer), optimizer, data and schedule
    (several conditions of an experiment). Each chip trains on its own batches (its run's
    noise and data order); between steps every run evaluates, records and checkpoints as
    if alone, so each run folder holds what :func:`run_spec` writes for that run (the same
    metrics and results; the seconds of its steps and measurement passes in its summary
    are those of the backend calls it took part in, wall time shared by their chips).

    A step of the population is one backend call (:meth:`Backend.launch_population_step`)
    per optimizer configuration (:func:`neurosim.population.call_key`: Adam's learning rate
    may differ) and batch size among the chips it steps (one call when all are in the
    same phase of the same schedule); the chips at an evaluation point make their
    measurement passes in one backend call per chunk of inputs, and their gradient
    probes in one per rule (:func:`neurosim.evaluation.measure_population`). Runs at
    different points (resumed from different checkpoints, or finished) are stepped
    together by how far they are: the ones behind first, until all are level. Each run
    hands over the steps up to its next evaluation point at once (a
    :class:`neurosim.rows.Segment`), and runs whose segments line up step as one cohort
    (:mod:`neurosim.cohorts`), so between evaluations a step does no per-chip work on the
    host; the steps' losses are waited for once, when a segment ends
    (:meth:`Backend.step_values`: a GPU computes while the host launches the next
    steps).
    """
    first = specs[0]
    hardware = first.population_key
    for spec in specs[1:]:
        if spec.population_key != hardware:
            raise ValueError("the runs of a population must share their chip, network, rule "
                             f"and simulation; {spec.condition} seed {spec.seed} differs from "
                             f"{first.condition} seed {first.seed}")
    if len({Path(run_dir).resolve() for run_dir in run_dirs}) != len(run_dirs):
        raise ValueError("the runs of a population need distinct run folders")
    check_population_fits(specs)
    backend = create_backend(first.experiment.simulation)
    summaries: list[dict | None] = [None] * len(specs)
    failed: set[int] = set()

    def attempt(c: int, action, *args, **kwargs):
        """``action(...)`` for run ``c``; on an error, raise it, or (``on_error``) report
        it and drop the run."""
        try:
            return action(*args, **kwargs)
        except Exception as error:
            if on_error is None:
                raise
            on_error(c, error)
            failed.add(c)
            return None

    trainers = {c: attempt(c, Trainer, spec, run_dir, backend, data_dir=data_dir)
                for c, (spec, run_dir) in enumerate(zip(specs, run_dirs))}
    members = [c for c in trainers if c not in failed]  # population row p is run members[p]
    if not members:
        return summaries
    row = {c: p for p, c in enumerate(members)}
    population = Population([trainers[c].chip for c in members])
    runs = {c: trainers[c].steps(resume) for c in members}
    # Each optimizer configuration's call_key as a small number (a cohort's key, compared
    # on every step), found once per segment of a run.
    call_ids: dict = {}
    cohorts = Cohorts(backend, population)

    def hand_over(results: list[tuple[int, tuple | None]]) -> None:
        """Send each run ``c`` of ``results`` its last segment's result (``None``: start
        it); the runs that go on start their next segments. Runs that measure first
        (evaluation points) are measured together, round after round, until each has
        handed over its next segment or ended."""
        started = []
        while results:
            requests = []
            for c, result in results:
                item = attempt(c, advance, runs[c], result)
                if isinstance(item, Request):
                    requests.append((c, item))
                elif item is not None:
                    call = call_ids.setdefault(call_key(trainers[c].optimizer.config),
                                               len(call_ids))
                    started.append((c, row[c], item, call, trainers[c]._steps_done()))
            answers = evaluation.measure_population(
                population, backend, [(row[c], request) for c, request in requests])
            results = [(c, answer) for (c, _), answer in zip(requests, answers)]
        cohorts.add(started)

    hand_over([(c, None) for c in members])
    optimizers = [trainers[c].optimizer for c in members]
    while cohorts:
        ended = cohorts.step(optimizers)
        if ended:
            hand_over([(c, result) for cohort in ended
                       for c, result in zip(cohort.runs, cohort.results())])
            optimizers = [trainers[c].optimizer for c in members]
    for c in members:
        if c not in failed:
            summaries[c] = attempt(c, trainers[c]._finish)
    population.release()  # state a backend held on its device: back home, device freed
    return summaries
