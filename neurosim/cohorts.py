"""Stepping the runs of a population: cohorts of runs whose segments line up.

Each run of a population hands its driver the steps up to its next evaluation point at
once (a :class:`neurosim.rows.Segment`). Runs whose segments start at the same step, are
as long, have the same batch size and the same optimizer call
(:func:`neurosim.population.call_key`) form a :class:`Cohort`: their batches' row
indices are stacked a block of steps at a time (``steps x runs x batch``), so a step of
the cohort picks its batches with one slice, and every cohort of a step with the same call
and batch size joins one backend call. A population of one schedule is one cohort:
between evaluations its driver does no per-run work at all; runs of several conditions
form a few cohorts.

:meth:`Cohorts.step` launches the steps of the runs that are behind
(:meth:`neurosim.backends.base.Backend.launch_population_step`) and does not wait for
them; when a cohort's segment ends, every step launched so far is waited for at once
(:meth:`Backend.step_values`) and each of its runs gets its segment's losses, correct
counts and the seconds of the calls it took part in (wall time shared by their runs,
the wait for the results included).
"""

from __future__ import annotations

import time

import numpy as np

from neurosim.backends.base import Backend
from neurosim.population import Population
from neurosim.rows import Segment

BLOCK = 64  # steps whose row indices a cohort stacks at once (256 runs x 64: 8 MB)


class Cohort:
    """Runs (their population rows ``rows``) stepped together through their segments."""

    def __init__(self, runs: list[int], rows: list[int], segments: list[Segment], call: int,
                 level: int):
        first = segments[0]
        self.runs, self.rows, self.segments = runs, rows, segments
        self.call, self.level = call, level
        self.length, self.batch_size = len(first), first.batch_size
        self.taken = 0
        self.drawn = first.draw is not None
        if not self.drawn:
            self._block, self._block_start = None, 0
            self.x_sources = [segment.x for segment in segments]
            self.y_sources = [segment.y for segment in segments]
        self.losses: list[np.ndarray] = []  # per step, the runs' summed losses
        self.correct: list[np.ndarray] = []
        self.seconds = 0.0

    def rows_now(self) -> np.ndarray:
        """The row indices of the runs' current step (``runs x batch``): a slice of the
        next :data:`BLOCK` steps' indices, stacked at once (``steps x runs x batch``)."""
        j = self.taken
        if self._block is None or not 0 <= j - self._block_start < BLOCK:
            self._block = np.stack([segment.indices[j:j + BLOCK]
                                    for segment in self.segments], axis=1)
            self._block_start = j
        return self._block[j - self._block_start]

    def key(self) -> tuple:
        """What the cohorts of one backend call share."""
        return self.call, self.batch_size

    def results(self) -> list[tuple[list, list, float]]:
        """Each run's (losses, correct counts, seconds) of its segment, step after step."""
        losses = np.stack(self.losses, axis=1).tolist()
        correct = np.stack(self.correct, axis=1).tolist()
        return [(l, c, self.seconds) for l, c in zip(losses, correct)]


def _alignment(segment: Segment, call: int, level: int) -> tuple:
    """What the runs of one cohort share: where their segments start and end, the batch
    size, the optimizer call, rows or draws, the phase."""
    return (level, len(segment), segment.batch_size, call, segment.draw is not None,
            segment.phase)


class Cohorts:
    """The cohorts of a population's runs (see the module docstring)."""

    def __init__(self, backend: Backend, population: Population):
        self.backend, self.population = backend, population
        self.cohorts: list[Cohort] = []
        self.launched: list[tuple[list[Cohort], object]] = []  # not waited for yet
        self.dtype = population.chips[0].dtype

    def __bool__(self) -> bool:
        return bool(self.cohorts)

    def add(self, started: list[tuple[int, int, Segment, int, int]]) -> None:
        """Runs that start a segment: (run, population row, segment, call, level) each;
        those that line up form one cohort."""
        groups: dict[tuple, list] = {}
        for entry in started:
            run, row, segment, call, level = entry
            groups.setdefault(_alignment(segment, call, level), []).append(entry)
        for entries in groups.values():
            runs, rows, segments, calls, levels = (list(column) for column in zip(*entries))
            self.cohorts.append(Cohort(runs, rows, segments, calls[0], levels[0]))

    def step(self, optimizers: list) -> list[Cohort]:
        """Launch one step of the cohorts that are behind, one backend call per optimizer
        call and batch size; returns the cohorts whose segments ended, with their results
        (all launched steps waited for) and out of the cohorts."""
        behind = min(cohort.level for cohort in self.cohorts)
        calls: dict[tuple, list[Cohort]] = {}
        for cohort in self.cohorts:
            if cohort.level == behind:
                calls.setdefault(cohort.key(), []).append(cohort)
        for group in calls.values():
            start = time.perf_counter()
            x, y = self._batches(group)
            rows = group[0].rows if len(group) == 1 else [r for c in group for r in c.rows]
            self.launched.append((group, self.backend.launch_population_step(
                self.population, optimizers, rows, x, y)))
            seconds = time.perf_counter() - start
            for cohort in group:
                cohort.seconds += seconds
                cohort.taken += 1
                cohort.level += 1
        ended = [cohort for group in calls.values() for cohort in group
                 if cohort.taken == cohort.length]
        if ended:
            self._wait()
            self.cohorts = [cohort for cohort in self.cohorts if cohort.taken < cohort.length]
        return ended

    def _batches(self, group: list[Cohort]) -> tuple:
        """The step's stacked (inputs, labels) of the cohorts ``group``."""
        backend = self.backend
        if not any(cohort.drawn for cohort in group):
            if len(group) == 1:
                cohort = group[0]
                index = cohort.rows_now()
                x_sources, y_sources = cohort.x_sources, cohort.y_sources
            else:
                index = np.concatenate([cohort.rows_now() for cohort in group])
                x_sources = [source for cohort in group for source in cohort.x_sources]
                y_sources = [source for cohort in group for source in cohort.y_sources]
            return (backend.gather_rows(x_sources, index, self.dtype),
                    backend.gather_rows(y_sources, index, np.dtype(np.int64)))
        batches = [segment.batch(cohort.taken) for cohort in group
                   for segment in cohort.segments]
        return (backend.stack_batches([batch[0] for batch in batches], self.dtype),
                backend.stack_batches([batch[1] for batch in batches], np.dtype(np.int64)))

    def _wait(self) -> None:
        """Wait for every launched step; hand each cohort its runs' losses and counts."""
        start = time.perf_counter()
        values = self.backend.step_values([launched for _, launched in self.launched])
        seconds = time.perf_counter() - start
        waited = set()
        for (group, _), (losses, correct) in zip(self.launched, values):
            offset = 0
            for cohort in group:
                n = len(cohort.runs)
                cohort.losses.append(losses[offset:offset + n])
                cohort.correct.append(correct[offset:offset + n])
                offset += n
                waited.add(cohort)
        for cohort in waited:
            cohort.seconds += seconds
        self.launched.clear()
