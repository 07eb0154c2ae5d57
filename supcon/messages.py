"""The one channel for messages to the user: the ``supcon`` logger.

Rules (also in the README's Development section):

- **Results** of a command (tables, JSON, "written to PATH") are the command's output: the
  command prints them to stdout.
- **Messages** (a fallback taken, data left out, a deprecated key, an alarm, a notice) go through
  :func:`say` / :func:`say_once`, i.e. ``logging.getLogger("supcon").warning``. With no logging
  configured Python prints them to stderr as they are; an application can route, filter or
  silence them with the standard :mod:`logging` machinery. The ``supcon`` command installs a plain
  stderr handler (:func:`to_stderr`) for the duration of a command.
- **Errors** in the user's input are raised as :class:`supcon.errors.SupconError`; the CLI prints
  them as one line (exit code 2).
- :func:`warnings.warn` is kept only for warnings about how the Python API is called (a loss
  called on a batch with no positive pair, a sampler that leaves classes out): the convention
  library users expect and filter with ``warnings``/``pytest.warns``. Under the CLI such warnings
  are shown through this channel too, one line each.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

LOGGER = logging.getLogger("supcon")
_PACKAGE = Path(__file__).resolve().parent
_said: set[str] = set()


def say(message: str) -> None:
    """Tell the user something they should know (on stderr unless logging is configured).

    Args:
        message: One line, complete with its prefix (e.g. ``"supcon train: ..."``).
    """
    LOGGER.warning(message)


def say_once(message: str) -> None:
    """:func:`say` ``message`` the first time it is said in this process only."""
    if message not in _said:
        _said.add(message)
        say(message)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message is emitted.

    So ``contextlib.redirect_stderr`` and pytest's ``capsys`` capture the messages too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # set by StreamHandler.__init__; always stderr
        pass


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` under the CLI: one line on the ``supcon`` channel."""
    try:
        ours = Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        ours = False
    text = " ".join(str(message).split())
    say(text if ours else f"{category.__name__}: {text} ({filename}:{lineno})")


@contextmanager
def to_stderr(*, python_warnings: bool = True) -> Iterator[None]:
    """Print the ``supcon`` channel as plain lines on stderr while the block runs.

    Used by the CLI around a command; removes its handler on exit.

    Args:
        python_warnings: Also show :func:`warnings.warn` warnings through the channel, one line
            each (restored on exit).
    """
    ours = [h for h in LOGGER.handlers if isinstance(h, _StderrHandler)]
    handler = None if ours else _StderrHandler()  # nested: print each message once
    level = LOGGER.level
    if handler is not None:
        LOGGER.addHandler(handler)
    if LOGGER.getEffectiveLevel() > logging.WARNING:
        LOGGER.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if python_warnings:
                warnings.showwarning = _show_warning
            yield
    finally:
        if handler is not None:
            LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
