"""L2-normalising embedding rows without losing them to overflow or underflow.

``x / ||x||`` in float32 breaks for large rows (``||x||²`` overflows to inf above ~1.8e19, so a
row × 1e30 became the zero vector) and for tiny ones. Each row is divided by its largest
absolute value first and normalised in float64, so a row and any positive multiple of it give
the same unit vector. Half-precision torch tensors (``float16``, ``bfloat16``) are upcast.
"""

from __future__ import annotations

import numpy as np
import torch

from supcon import blocks


def as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A numpy view/copy of ``x``; half-precision tensors are upcast to float32 first."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def unit_rows(x: np.ndarray | torch.Tensor, name: str, *, context: str = "") -> np.ndarray:
    """Validated, L2-normalised, C-contiguous float32 rows.

    Args:
        x: ``(N, D)`` numbers (numpy or torch, any float or int dtype).
        name: What ``x`` is, for error messages.
        context: Appended to the non-finite error (e.g. ``" before evaluating"``).

    Returns:
        ``(N, D)`` float32; all-zero rows stay zero.

    Raises:
        ValueError: for a wrong shape, a non-numeric dtype, or rows holding NaN or inf.
    """
    arr = as_numpy(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    out = np.empty(arr.shape, dtype=np.float32)
    bad: list[np.ndarray] = []
    for start in range(0, len(arr), blocks.UNIT_BLOCK_ROWS):
        block = arr[start : start + blocks.UNIT_BLOCK_ROWS].astype(np.float64)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            bad.append(start + np.flatnonzero(~finite))
            continue
        scale = np.abs(block).max(axis=1, keepdims=True)
        block /= np.where(scale > 0, scale, 1.0)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block / np.where(norms > 0, norms, 1.0)
    if bad:
        rows = np.concatenate(bad)
        shown = ", ".join(str(i) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(
            f"{name} has {len(rows)} row(s) with NaN or inf (rows {shown}); drop or fix them"
            f"{context}."
        )
    return out
