"""The error a training run stops with when it cannot go on."""

from __future__ import annotations

from supcon.errors import SupconError


class TrainingError(SupconError, RuntimeError):
    """Training cannot go on (non-finite loss, impossible batch); the message says why."""
