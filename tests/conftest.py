"""Shared test fixtures: small chips and experiment configs built in code."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

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



class Interrupted(Exception):
    """Raised inside a run to simulate a crash."""


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
