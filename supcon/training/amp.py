"""Mixed precision: the autocast context and the fp16 gradient scaler of a run."""

from __future__ import annotations

import contextlib

import torch

from supcon.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse precisions the device cannot run.

    Raises:
        ValueError: for an unknown precision, fp16 off CUDA, or bf16 on a GPU without it.
    """
    if precision not in ("fp32", *DTYPES):
        raise ConfigError(f"train.precision must be fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "train.precision=fp16 needs a CUDA device (it relies on a gradient scaler); use "
            "train.precision=bf16 or fp32 on the CPU"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            "this GPU does not support bf16; use train.precision=fp16 (with a gradient scaler)"
        )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` / ``fp16``; a no-op context for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
