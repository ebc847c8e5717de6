"""Errors that neurosim reports to users as one line, without a traceback.

Every error raised for bad user input (a config file, a CLI override, a data file) is a
:class:`NeurosimError`; the CLI prints ``error: <message>`` and exits with status 2.
"""

from __future__ import annotations


class NeurosimError(Exception):
    """Base class of every error meant for the user (printed as one line by the CLI)."""


class ConfigError(NeurosimError):
    """A configuration value is invalid.

    The message names the file, the dotted field path, the bad value and what is allowed:
    ``hw_configs/x.yaml: forward.w_max = -1.0: must be > forward.w_min (-1.0)``.
    """

    def __init__(self, source: str, path: str, value: object, allowed: str):
        self.source, self.path, self.value, self.allowed = source, path, value, allowed
        super().__init__(f"{source}: {path} = {shown_value(value)}: {allowed}")


#: Longest value a message shows (its repr): a whole mapping or list given where a field
#: was expected would otherwise push the rule off a one-line message.
MAX_SHOWN_VALUE = 80


def shown_value(value: object, limit: int = MAX_SHOWN_VALUE) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis when longer."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class DataError(NeurosimError):
    """A dataset is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(NeurosimError):
    """A checkpoint cannot be read or does not belong to the run being resumed."""
