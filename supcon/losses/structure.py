"""Positive / denominator structure of a contrastive batch, computed one row block at a time.

A SupCon batch is described by two boolean relations between anchors (rows) and candidates
(columns): ``positive[i, j]`` says that candidate ``j`` is a positive of anchor ``i``, and
``in_denominator[i, j]`` says that ``j`` enters anchor ``i``'s log-sum-exp. ``positive`` is
always a subset of ``in_denominator`` and an anchor is never its own candidate.

Neither relation is ever stored as a full ``(N, M)`` matrix except when the user passes one:
:meth:`PairStructure.block` builds the ``(rows, M)`` slice for a block of anchors, which is what
lets the tiled loss keep memory at ``O(block * M)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PairStructure:
    """Which (anchor, candidate) pairs are positives and which enter the denominator.

    Anchors are the first ``num_anchors`` candidates (that is how the flattened batch is laid
    out), so anchor ``i`` is candidate ``i`` and is excluded from its own row.

    Exactly one source of positives is set:

    * ``keys``: ``(M,)`` integer keys (class labels or sample ids); positives share a key.
    * ``multi_hot``: ``(M, C)`` boolean; positives share at least one class.
    * ``dense_positive``: ``(num_anchors, M)`` boolean, given by the user.
    * ``pos_pairs`` / ``neg_pairs``: PML-style index pairs ``(a1, p)`` and ``(a2, n)``; both the
      positives and the denominator are restricted to these pairs, as in PML.

    Attributes:
        num_anchors: Number of anchor rows ``N_a``.
        num_candidates: Number of candidate columns ``M`` (batch rows, then reference rows).
    """

    num_anchors: int
    num_candidates: int
    keys: Tensor | None = None
    multi_hot: Tensor | None = None
    dense_positive: Tensor | None = None
    pos_pairs: tuple[Tensor, Tensor] | None = None
    neg_pairs: tuple[Tensor, Tensor] | None = None

    @property
    def device(self) -> torch.device:
        for t in (self.keys, self.multi_hot, self.dense_positive):
            if t is not None:
                return t.device
        assert self.pos_pairs is not None
        return self.pos_pairs[0].device

    def block(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Masks for anchors ``start:stop``.

        Args:
            start: First anchor row of the block.
            stop: One past the last anchor row.

        Returns:
            ``(positive, in_denominator)``, each ``(stop - start, M)`` boolean.
        """
        rows = stop - start
        cols = self.num_candidates
        device = self.device
        row_ids = torch.arange(start, stop, device=device)
        col_ids = torch.arange(cols, device=device)
        not_self = row_ids[:, None] != col_ids[None, :]

        if self.pos_pairs is not None:
            assert self.neg_pairs is not None
            positive = _pairs_to_block(self.pos_pairs, start, stop, cols)
            in_denominator = positive | _pairs_to_block(self.neg_pairs, start, stop, cols)
            return positive & not_self, in_denominator & not_self

        if self.keys is not None:
            positive = self.keys[start:stop, None] == self.keys[None, :]
        elif self.multi_hot is not None:
            hot = self.multi_hot.to(torch.float32)
            positive = (hot[start:stop] @ hot.T) > 0
        else:
            assert self.dense_positive is not None
            positive = self.dense_positive[start:stop].clone()
        assert positive.shape == (rows, cols)
        return positive & not_self, not_self

    def positives_per_anchor(self, block_rows: int = 4096) -> Tensor:
        """Number of positives of every anchor.

        Args:
            block_rows: Rows per block, bounding memory at ``block_rows * M``.

        Returns:
            ``(N_a,)`` int64 counts.
        """
        counts = []
        for start in range(0, self.num_anchors, block_rows):
            stop = min(start + block_rows, self.num_anchors)
            positive, _ = self.block(start, stop)
            counts.append(positive.sum(dim=1))
        return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def _pairs_to_block(pairs: tuple[Tensor, Tensor], start: int, stop: int, cols: int) -> Tensor:
    """Scatter the index pairs whose first index falls in ``start:stop`` into a dense block."""
    first, second = pairs
    keep = (first >= start) & (first < stop)
    block = torch.zeros(stop - start, cols, dtype=torch.bool, device=first.device)
    block[first[keep] - start, second[keep]] = True
    return block
