"""Errors that neurosim reports to users as one line, without a traceback.

Every error raised for bad user input (a config file, a CLI override, a data file) is a
:class:`NeurosimError`; the CLI prints ``error: <message>`` and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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
    """``value`` as the YAML user wrote it (:func:`yaml_repr`), cut to ``limit`` characters
    with an ellipsis when longer."""
    text = yaml_repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def yaml_repr(value: object, _seen: frozenset = frozenset()) -> str:
    """``repr(value)`` with YAML's words for Python's: ``null``, ``true``, ``false``, also
    inside lists and mappings (a recursive one, which YAML aliases can build, shows
    ``...`` where it repeats)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple, dict)):
        if id(value) in _seen:
            return "..."
        seen = _seen | {id(value)}
        if isinstance(value, dict):
            return "{" + ", ".join(f"{yaml_repr(k, seen)}: {yaml_repr(v, seen)}"
                                   for k, v in value.items()) + "}"
        return "[" + ", ".join(yaml_repr(v, seen) for v in value) + "]"
    return repr(value)


class DataError(NeurosimError):
    """A dataset is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(NeurosimError):
    """A checkpoint cannot be read or does not belong to the run being resumed."""


class OutputError(NeurosimError):
    """A result file, folder or lock cannot be written: a full or read-only disk, no
    permission, or a path that goes through a file."""


@contextmanager
def writing(path: object) -> Iterator[None]:
    """Raise an ``OSError`` of the block as an :class:`OutputError` naming ``path`` and
    the system's reason (``No space left on device``), one line rather than a traceback."""
    try:
        yield
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error
