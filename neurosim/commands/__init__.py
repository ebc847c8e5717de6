"""Sub-commands of the ``neurosim`` CLI, one module each (see :mod:`neurosim.cli`)."""

from neurosim.commands import (bench, compare, config, data, devices, energy, reproduce, run,
                               sweep, sweep_report)

COMMANDS = (run, sweep, sweep_report, compare, energy, reproduce, config, data, devices,
            bench)
