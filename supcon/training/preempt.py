"""Preemption: SIGTERM / SIGINT end training after the current step with a checkpoint.

Schedulers send SIGTERM before they kill a job, and Ctrl-C sends SIGINT. Inside
:class:`StopSignals` the first such signal only sets a flag; the loop finishes its step, writes
``last.pt`` and raises :class:`Preempted`, which the command turns into exit code 143 / 130
(128 + the signal number). A second signal of the same kind acts as usual (the writes are atomic,
so even then nothing is half-written). Under ``torchrun`` the ranks agree on the flag at every
step (one small all-reduce), so they all stop after the same step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):  # noqa: N818  (a normal way for a run to end, not an error)
    """Training stopped on a signal after writing ``last.pt``.

    Attributes:
        signum: The signal received.
        exit_code: ``128 + signum`` (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignals:
    """Context manager: SIGTERM and SIGINT request a stop instead of killing the process.

    Outside the main thread (where Python cannot install handlers) it does nothing.

    Attributes:
        received: The first signal number received, or ``None``.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            return
        # A second signal: behave as without us (die on SIGTERM, KeyboardInterrupt on SIGINT).
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
