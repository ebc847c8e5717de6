"""Sub-commands of the ``neurosim`` CLI, one module each (see :mod:`neurosim.cli`)."""

from neurosim.commands import compare, config, data, devices, energy, run

COMMANDS = (run, compare, energy, config, data, devices)
