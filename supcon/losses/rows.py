"""A validated, flattened contrastive batch before gathering: what :mod:`.inputs` produces and
:mod:`.gather` concatenates across ranks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LocalRows:
    """A validated, flattened batch before gathering and before reference rows are added.

    Attributes:
        flat: ``(N, D)`` rows (view-major for ``(B, V, D)`` input), original dtype.
        num_samples: ``B`` (``N`` for ``(N, D)`` input).
        num_anchors: The first ``num_anchors`` rows are anchors.
        keys: ``(N,)`` int64 keys (labels or sample ids), or ``None``.
        keys_are_labels: True when ``keys`` are class labels (shared across ranks), False when
            they are per-batch sample ids (made distinct per rank when gathering).
        multi_hot: ``(N, C)`` boolean labels, or ``None``.
        dense_positive: ``(num_anchors, N)`` boolean user mask, or ``None``.
        indices_tuple: The raw miner output, validated later against the final row count.
    """

    flat: Tensor
    num_samples: int
    num_anchors: int
    keys: Tensor | None = None
    keys_are_labels: bool = False
    multi_hot: Tensor | None = None
    dense_positive: Tensor | None = None
    indices_tuple: tuple[Tensor, ...] | None = None
