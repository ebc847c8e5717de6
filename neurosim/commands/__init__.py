"""Sub-commands of the ``neurosim`` CLI, one module each (see :mod:`neurosim.cli`)."""

from neurosim.commands import compare, config, data, devices, run

COMMANDS = (run, compare, config, data, devices)
