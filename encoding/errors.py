"""Errors that are the user's to fix, told apart from bugs.

Everything brain2music raises because of its input (a config value, a data file, an output folder,
a model that cannot be loaded) is a :class:`UserError`: its message names the file, key or value
and says what to do. The command line prints that message and exits with status 2; any other
exception is a bug and ends with a traceback and a request to report it.

The classes also derive from the built-in exception a Python caller would expect (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A config value of the wrong type, out of range, unknown, or inconsistent with the data."""


class DataError(UserError, ValueError):
    """Input data that cannot be used as they are (wrong shape, NaN, inconsistent files)."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or folder that does not exist."""


class OutputError(UserError, OSError):
    """An output folder that cannot be written."""


class ModelLoadError(UserError, OSError):
    """A pretrained model (hub id or folder) that cannot be loaded."""
