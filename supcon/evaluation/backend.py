"""Where evaluation runs: the torch device for exact search, FAISS on GPU when it can be.

Fallbacks are never silent: each is said once per process on the ``supcon`` message channel
(:mod:`supcon.messages`).
"""

from __future__ import annotations

from typing import Any

import torch

from supcon.errors import InputError
from supcon.messages import say_once


def _faiss() -> Any:
    """The faiss module, imported on first use (``import supcon`` stays light)."""
    import faiss

    return faiss


def resolve_device(device: str | torch.device | None, *tensors: object) -> torch.device:
    """The device exact search runs on.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when available) or
            ``None`` (CUDA when an input tensor is on CUDA, else CPU).
        tensors: The inputs (only consulted when ``device`` is ``None``).

    Returns:
        The device.

    Raises:
        ValueError: for CUDA on a machine without it.
    """
    if device is None:
        on_cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)
        return torch.device("cuda" if on_cuda else "cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={str(device)!r} but CUDA is not available; use device='cpu'")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device must be 'cpu', 'cuda' or 'auto', got {str(device)!r}")
    return device


def faiss_gpu_count() -> int:
    """GPUs FAISS can use (0 for the faiss-cpu package)."""
    if not hasattr(_faiss(), "StandardGpuResources"):
        return 0
    return int(_faiss().get_num_gpus())


def faiss_gpu_or_say(wanted: bool) -> bool:
    """Whether to put a FAISS index on the GPU; says once why not when one was wanted."""
    if not wanted:
        return False
    if faiss_gpu_count() > 0:
        return True
    say_once(
        "FAISS has no GPU here (faiss-cpu is installed, or no GPU is visible); FAISS indexes "
        "search on the CPU. Install faiss-gpu for GPU search."
    )
    return False
