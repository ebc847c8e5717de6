"""How large the reproduction is: the full suite (the paper's settings where they are
affordable on a small machine, documented in the report) or ``--quick`` (shrunk data and
schedules: the whole suite in minutes on 2 cores, for smoke tests and device presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Sizes of every experiment of the suite.

    The paper's settings (appendix): [784, 100, 10] ReLU, Adam lr 1e-4, batch 64, a fixed set
    of 10,000 Gaussian noise examples, 10,000 noise steps. Epoch counts are ours (the paper
    trains longer); each report states the values used.
    """

    name: str
    epochs: int                       # data training epochs of the learning experiments
    train_size: int | None            # training examples (None: the whole training split)
    test_size: int | None             # test examples (None: the whole test split)
    noise_steps: int                  # noise preconditioning steps
    noise_examples: int               # size of the fixed noise set
    noise_log_every: int              # steps between noise-phase records
    probe_size: int                   # train/noise probe examples for losses and readout
    grid_means: tuple[float, ...]     # Fig. 1 robustness: Gaussian input means
    grid_stds: tuple[float, ...]      # Fig. 1 robustness: Gaussian input standard deviations
    grid_steps: int                   # noise steps of each robustness condition
    subset_sizes: tuple[int, ...]     # Fig. 3: training-set sizes of the gap-vs-size study
    subset_steps: int                 # data steps of each small-set run (epochs follow)
    depths: tuple[int, ...]           # Fig. 3: hidden layers of the depth study
    depth_epochs: int                 # data epochs of the depth study
    trajectory_steps: int             # Fig. 2 PCA: steps of each phase of an order
    trajectory_snapshots: int         # Fig. 2 PCA: snapshots per phase
    meta_points: int                  # Fig. 5: meta-loss evaluations during noise training
    meta_tasks: tuple[str, ...]       # Fig. 5: tasks of the meta-loss
    meta_inner_steps: int             # Fig. 5: adaptation steps (paper: 10)
    meta_inner_lr: float              # Fig. 5: adaptation Adam lr (paper: 1e-3)
    meta_query_size: int              # Fig. 5: test examples the adapted loss is taken on
    adaptation_steps: int             # Fig. 5: length of the adaptation curves
    hardware_epochs: int              # beyond the paper: data epochs on each device preset
    hardware_train_size: int | None   # beyond the paper: training examples per preset
    hardware_noise_steps: int         # beyond the paper: noise steps on each device preset
    energy_target: float              # beyond the paper: test accuracy of "energy to target"

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


FULL = Settings(
    name="full", epochs=5, train_size=None, test_size=None, noise_steps=10000,
    noise_examples=10000, noise_log_every=250, probe_size=10000,
    grid_means=(0.0, 1.0), grid_stds=(0.5, 1.0, 2.0), grid_steps=3000,
    subset_sizes=(100, 200, 400, 800, 1600), subset_steps=1000,
    depths=(2, 4, 6), depth_epochs=1,
    trajectory_steps=2000, trajectory_snapshots=20,
    meta_points=6, meta_tasks=("mnist", "fashion_mnist", "kmnist"), meta_inner_steps=10,
    meta_inner_lr=1e-3, meta_query_size=2000, adaptation_steps=100,
    hardware_epochs=1, hardware_train_size=20000, hardware_noise_steps=3000,
    energy_target=0.85)

QUICK = Settings(
    name="quick", epochs=2, train_size=6000, test_size=2000, noise_steps=1500,
    noise_examples=2000, noise_log_every=100, probe_size=2000,
    grid_means=(0.0, 1.0), grid_stds=(0.5, 1.0), grid_steps=800,
    subset_sizes=(100, 200, 400, 800, 1600), subset_steps=300,
    depths=(2, 4, 6), depth_epochs=1,
    trajectory_steps=600, trajectory_snapshots=12,
    meta_points=4, meta_tasks=("mnist", "fashion_mnist", "kmnist"), meta_inner_steps=10,
    meta_inner_lr=1e-3, meta_query_size=500, adaptation_steps=30,
    hardware_epochs=1, hardware_train_size=4000, hardware_noise_steps=1000, energy_target=0.8)


def tiny(settings: Settings = QUICK) -> Settings:
    """Smallest meaningful sizes (tests): every code path, seconds per experiment."""
    return settings.replace(
        name="tiny", epochs=1, train_size=300, test_size=200, noise_steps=40, noise_examples=128,
        noise_log_every=20, probe_size=128, grid_means=(0.0,), grid_stds=(1.0,), grid_steps=20,
        subset_sizes=(100, 200), subset_steps=10, depths=(2,), depth_epochs=1,
        trajectory_steps=20, trajectory_snapshots=4, meta_points=2, meta_inner_steps=2,
        meta_query_size=64, adaptation_steps=4, hardware_epochs=1, hardware_train_size=200,
        hardware_noise_steps=20)
