"""Checkpoints: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from supcon.io import atomic_torch_save


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save a checkpoint dict (state dicts, numbers, strings, plain containers).

    Args:
        path: Destination ``.pt`` file.
        state: What to save; must be loadable with ``weights_only=True``.

    Returns:
        The path written.
    """
    return atomic_torch_save(path, state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: with the path, when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    return torch.load(path, map_location=map_location, weights_only=True)
