"""Which torch device to run on: one rule and one error for training, evaluation and the CLI.

The rule (:func:`resolve_device`):

* ``"auto"``: CUDA when it is available, else the CPU.
* ``"cuda"``: this process's GPU, ``cuda:LOCAL_RANK`` (``cuda:0`` outside ``torchrun``).
* ``"cuda:N"``, ``"cpu"``: that device.
* ``None``: CUDA when one of the given input tensors is on CUDA, else the CPU (for functions
  that follow their inputs, such as :func:`supcon.retrieval_metrics`).

Asking for CUDA on a machine without it, or for any other device, raises :class:`DeviceError`,
one line that names the setting and the fix.
"""

from __future__ import annotations

import os

import torch

from supcon.errors import UserError


class DeviceError(UserError, ValueError):
    """The requested device cannot be used here; the message says what to change."""


def local_rank() -> int:
    """``LOCAL_RANK`` from the environment: this process's GPU under ``torchrun`` (else 0)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(
    device: str | torch.device | None, *tensors: object, option: str = "device"
) -> torch.device:
    """The device to run on (see the module docstring for the rule).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device``, or
            ``None`` (follow ``tensors``).
        tensors: The inputs, consulted only when ``device`` is ``None``.
        option: How the user spelled the setting (``"train.device"``, ``"--device"``), for the
            error message.

    Returns:
        The device, with an index for CUDA.

    Raises:
        DeviceError: for CUDA on a machine without it, or a device other than CPU / CUDA.
    """
    if device is None:
        on_cuda = [t.device for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda]
        return on_cuda[0] if on_cuda else torch.device("cpu")
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{option}={name} but CUDA is not available here; use {option}=cpu (or auto)"
            )
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank())
    raise DeviceError(f"{option} must be auto, cpu, cuda or cuda:N, got {str(device)!r}")
