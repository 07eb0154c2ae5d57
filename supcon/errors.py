"""The error classes the command line reports as one line with exit code 2.

Every error that means "the user's input is wrong" derives from :class:`SupconError`; the
message says what is wrong and how to fix it. The CLI (:mod:`supcon.cli`) prints such an error as
one line and exits with code 2. Any other exception is a bug in supcon: it keeps its traceback,
with a line asking to report it, and exits with code 1.

The classes keep a second, built-in base where callers expect one (``ConfigError`` is a
``ValueError``, ``OutputError`` an ``OSError``, ``TrainingError`` a ``RuntimeError``), so
``except ValueError`` in user code keeps working. Classes that belong to one subsystem live next
to it (``supcon.config.ConfigError``, ``supcon.data.sources.DataError``, …) and derive from
:class:`SupconError`; the generic ones live here.
"""

from __future__ import annotations


class SupconError(Exception):
    """Base of every error that reports a mistake in the user's input, data or setting.

    The message is one line (it may quote a path or value) that says what is wrong and how to
    fix it; the CLI shows it without a traceback.
    """


class UserError(SupconError):
    """An error in the user's input; the message says what is wrong and how to fix it."""


class ConfigError(SupconError, ValueError):
    """A recipe or override is wrong; the message says what and how to fix it.

    Also importable as ``supcon.config.ConfigError``. Defined here so components (which must not
    import the config) can raise it for a recipe value they were given.
    """


class InputError(SupconError, ValueError):
    """A bad value given on the command line or in a recipe, raised as a ``ValueError``.

    For library code whose Python-API callers catch ``ValueError`` but whose message also reaches
    the CLI user.
    """


class MissingFileError(SupconError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""
