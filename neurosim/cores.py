"""The cores this process may run on: what worker pools and the machine description count."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (under taskset, SLURM or a
    container's cpuset), not every core of the machine (``os.cpu_count``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
