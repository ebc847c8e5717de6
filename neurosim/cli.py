"""The ``neurosim`` command line.

Each sub-command lives in its own module under :mod:`neurosim.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit status. User errors (:class:`NeurosimError`) are
printed as one line on stderr with exit status 2, never as a traceback; so is running out
of memory (sizes in the config too large for this machine), with what to reduce.
"""

from __future__ import annotations

import argparse
import os
import sys

from neurosim import __version__
from neurosim.errors import NeurosimError

EXIT_USER_ERROR = 2
#: What sets the memory a run needs, named when an allocation fails.
MEMORY_HINT = ("network.dims, the batch sizes, precondition.n_examples, the evaluation probe "
               "sizes or population.max_chips")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command. The commands are imported here, inside
    :func:`main`'s handling of Ctrl-C: importing them (numpy, scipy, numba, matplotlib)
    takes seconds, and an interrupt then was a traceback."""
    from neurosim.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="neurosim",
        description="Simulate neuromorphic chips trained with local learning rules.",
    )
    parser.add_argument("--version", action="version", version=f"neurosim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def is_torch_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is torch's ``OutOfMemoryError`` (a RuntimeError: a CUDA
    allocation failed), told by its class without importing torch."""
    return any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
               for cls in type(error).__mro__)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except NeurosimError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError as error:  # numpy's _ArrayMemoryError too: sizes the config chose
        print(f"error: out of memory: {str(error) or 'an allocation failed'}; reduce "
              f"{MEMORY_HINT}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:
        if not is_torch_out_of_memory(error):
            raise
        message = str(error).splitlines()[0] if str(error) else "an allocation failed"
        print(f"error: out of GPU memory: {message}; reduce {MEMORY_HINT}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (``| head``): quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


if __name__ == "__main__":
    sys.exit(main())
