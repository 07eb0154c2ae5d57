"""The row order of a flattened contrastive batch, and the batch before gathering.

:func:`view_major` is the one place that flattens ``(B, V, D)`` views into rows (the loss, the
miners, the cross-batch memory and the training step all use it); :class:`LocalRows` is what
:mod:`.inputs` produces and :mod:`.gather` concatenates across ranks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


def view_major(grouped: Tensor) -> Tensor:
    """Flatten ``(B, V, ...)`` views into ``(V * B, ...)`` rows, view-major as SupContrast.

    View ``v`` of sample ``b`` lands on row ``v * B + b``, so rows ``[0, B)`` are every
    sample's first view; labels follow with ``labels.repeat(V)``.

    Args:
        grouped: ``(B, V, ...)``.

    Returns:
        ``(V * B, ...)``.
    """
    return grouped.transpose(0, 1).reshape(-1, *grouped.shape[2:])


@dataclass
class LocalRows:
    """A validated, flattened batch before gathering and before reference rows are added.

    Attributes:
        flat: ``(N, D)`` rows (view-major for ``(B, V, D)`` input), original dtype.
        num_anchors: The first ``num_anchors`` rows are anchors.
        keys: ``(N,)`` int64 keys (labels or sample ids), or ``None``.
        keys_are_labels: True when ``keys`` are class labels (shared across ranks), False when
            they are per-batch sample ids (made distinct per rank when gathering).
        multi_hot: ``(N, C)`` boolean labels, or ``None``.
        dense_positive: ``(num_anchors, N)`` boolean user mask, or ``None``.
        indices_tuple: The raw miner output, validated later against the final row count.
    """

    flat: Tensor
    num_anchors: int
    keys: Tensor | None = None
    keys_are_labels: bool = False
    multi_hot: Tensor | None = None
    dense_positive: Tensor | None = None
    indices_tuple: tuple[Tensor, ...] | None = None
