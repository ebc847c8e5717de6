"""What produced a result: neurosim's version and source revision, and the versions of the
libraries whose arithmetic it depends on. Written into every run's ``summary.json`` (and
named in its report) and into every benchmark's machine description, so that a results
folder says which code made it."""

from __future__ import annotations

import functools
import os
from importlib import metadata
import platform
import subprocess
from pathlib import Path

import numba
import numpy as np
import scipy

from neurosim import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


#: Names the revision of a copy of the source without its git history (a machine the
#: working tree was copied to, such as the lent GPU machine): used only outside a checkout.
REVISION_VARIABLE = "NEUROSIM_REVISION"


@functools.cache
def source_revision() -> str | None:
    """The git commit neurosim was imported from, with ``+dirty`` when its tracked files
    have uncommitted changes. Outside a git checkout (an installed wheel, a copied tree) or
    without git: the revision :data:`REVISION_VARIABLE` gives, marked ``(as given)``, else
    ``None``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        given = os.environ.get(REVISION_VARIABLE, "").strip()
        return f"{given} (as given)" if given else None
    return commit + ("+dirty" if dirty else "")


@functools.cache
def torch_version() -> str | None:
    """torch's version when it is installed (the optional backend), else ``None``: read from
    its package metadata, since importing torch takes seconds."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """neurosim's version and revision, Python's, the numeric libraries' and the
    platform's: the same for every run of one process (nothing here depends on time)."""
    return {"neurosim": __version__, "revision": source_revision(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "torch": torch_version(),
            "platform": platform.platform()}
