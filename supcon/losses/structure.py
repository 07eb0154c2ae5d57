"""Positive / denominator structure of a contrastive batch, computed one row block at a time.

A SupCon batch is described by two boolean relations between anchors (rows) and candidates
(columns): ``positive[i, j]`` says that candidate ``j`` is a positive of anchor ``i``, and
``in_denominator[i, j]`` says that ``j`` enters anchor ``i``'s log-sum-exp. ``positive`` is
always a subset of ``in_denominator`` and an anchor is never its own candidate.

Neither relation is ever stored as a full ``(N, M)`` matrix except when the user passes one:
:meth:`PairStructure.block_masks` builds the ``(rows, M)`` slice for a block of anchors, which is
what lets the tiled loss keep memory at ``O(block * M)``. Mined index pairs are sorted by anchor
once, so building a block's masks costs ``O(pairs in the block)``, not ``O(all pairs)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class _SortedPairs:
    """Index pairs sorted by anchor row, with the row boundaries for fast block slicing."""

    rows: Tensor  # (P,) anchor rows, sorted
    cols: Tensor  # (P,) candidate columns
    bounds: Tensor  # (num_anchors + 1,) CPU int64: pairs of row r are [bounds[r], bounds[r+1])

    @staticmethod
    def build(rows: Tensor, cols: Tensor, num_anchors: int) -> _SortedPairs:
        keep = (rows >= 0) & (rows < num_anchors)
        rows, cols = rows[keep], cols[keep]
        order = torch.argsort(rows, stable=True)
        rows, cols = rows[order], cols[order]
        edges = torch.arange(num_anchors + 1, device=rows.device)
        bounds = torch.searchsorted(rows, edges).cpu()
        return _SortedPairs(rows, cols, bounds)

    def scatter(self, start: int, stop: int, cols: int) -> Tensor:
        """Dense ``(stop - start, cols)`` boolean block of the pairs whose row is in the block."""
        lo, hi = int(self.bounds[start]), int(self.bounds[stop])
        block = torch.zeros(stop - start, cols, dtype=torch.bool, device=self.rows.device)
        if hi > lo:
            block[self.rows[lo:hi] - start, self.cols[lo:hi]] = True
        return block

    def counts(self) -> Tensor:
        """Pairs per anchor row (duplicates included), ``(num_anchors,)`` int64 on CPU."""
        return self.bounds[1:] - self.bounds[:-1]


@dataclass(frozen=True)
class PairStructure:
    """Which (anchor, candidate) pairs are positives and which enter the denominator.

    Anchors are the candidates ``anchor_offset + r`` for ``r in [0, num_anchors)`` (the
    flattened batch puts them there; under a distributed gather a rank's anchors sit at its
    offset in the gathered rows), so anchor ``r`` is excluded from column ``anchor_offset + r``.

    Exactly one source of positives is set:

    * ``keys``: ``(M,)`` integer keys (class labels or sample ids); positives share a key.
    * ``multi_hot``: ``(M, C)`` boolean; positives share at least one class.
    * ``dense_positive``: ``(num_anchors, M)`` boolean, given by the user.
    * ``pos_pairs`` / ``neg_pairs``: PML-style index pairs ``(anchor row, candidate)``; both the
      positives and the denominator are restricted to these pairs, as in PML.

    Attributes:
        num_anchors: Number of anchor rows ``N_a``.
        num_candidates: Number of candidate columns ``M`` (batch rows, then reference rows).
        anchor_offset: Column of anchor row 0.
    """

    num_anchors: int
    num_candidates: int
    keys: Tensor | None = None
    multi_hot: Tensor | None = None
    dense_positive: Tensor | None = None
    pos_pairs: tuple[Tensor, Tensor] | None = None
    neg_pairs: tuple[Tensor, Tensor] | None = None
    anchor_offset: int = 0
    _sorted: tuple[_SortedPairs, _SortedPairs] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.pos_pairs is not None:
            assert self.neg_pairs is not None
            pos = _SortedPairs.build(*self.pos_pairs, self.num_anchors)
            neg = _SortedPairs.build(*self.neg_pairs, self.num_anchors)
            object.__setattr__(self, "_sorted", (pos, neg))

    @property
    def kind(self) -> str:
        """``"keys"``, ``"multi_hot"``, ``"mask"`` or ``"pairs"``."""
        if self.pos_pairs is not None:
            return "pairs"
        if self.keys is not None:
            return "keys"
        if self.multi_hot is not None:
            return "multi_hot"
        return "mask"

    @property
    def device(self) -> torch.device:
        for t in (self.keys, self.multi_hot, self.dense_positive):
            if t is not None:
                return t.device
        assert self.pos_pairs is not None
        return self.pos_pairs[0].device

    def not_self(self, start: int, stop: int) -> Tensor:
        """``(stop - start, M)`` boolean: True except at each anchor's own column."""
        rows = torch.arange(start, stop, device=self.device) + self.anchor_offset
        cols = torch.arange(self.num_candidates, device=self.device)
        return rows[:, None] != cols[None, :]

    def block_masks(self, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
        """Masks for anchor rows ``start:stop``, self-pairs removed.

        Args:
            start: First anchor row of the block.
            stop: One past the last anchor row.

        Returns:
            ``(positive, in_denominator)``: ``(stop - start, M)`` booleans. ``in_denominator`` is
            ``None`` when it is every candidate except the anchor itself (no miner restriction),
            which lets callers skip a mask pass.
        """
        cols = self.num_candidates
        if self._sorted is not None:
            pos_sorted, neg_sorted = self._sorted
            positive = pos_sorted.scatter(start, stop, cols)
            in_denominator = positive | neg_sorted.scatter(start, stop, cols)
            self._clear_self(positive, start, stop)
            self._clear_self(in_denominator, start, stop)
            return positive, in_denominator
        if self.keys is not None:
            lo, hi = start + self.anchor_offset, stop + self.anchor_offset
            positive = self.keys[lo:hi, None] == self.keys[None, :]
        elif self.multi_hot is not None:
            hot = self.multi_hot.to(torch.float32)
            lo, hi = start + self.anchor_offset, stop + self.anchor_offset
            positive = (hot[lo:hi] @ hot.T) > 0
        else:
            assert self.dense_positive is not None
            positive = self.dense_positive[start:stop].clone()
        self._clear_self(positive, start, stop)
        return positive, None

    def _clear_self(self, block: Tensor, start: int, stop: int) -> None:
        block.diagonal(offset=self.anchor_offset + start).fill_(False)

    def block(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Masks for anchors ``start:stop`` with the denominator always materialised.

        Args:
            start: First anchor row of the block.
            stop: One past the last anchor row.

        Returns:
            ``(positive, in_denominator)``, each ``(stop - start, M)`` boolean.
        """
        positive, in_denominator = self.block_masks(start, stop)
        if in_denominator is None:
            in_denominator = self.not_self(start, stop)
        return positive, in_denominator

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
            positive, _ = self.block_masks(start, stop)
            counts.append(positive.sum(dim=1))
        return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)

    def num_mined_pairs(self) -> int:
        """Mined positive + negative pairs whose anchor is one of this structure's anchors."""
        if self._sorted is None:
            raise ValueError("num_mined_pairs needs a structure built from indices_tuple.")
        return sum(int(p.rows.numel()) for p in self._sorted)

    def compact_keys(self) -> tuple[Tensor, int]:
        """Keys renumbered to ``0..K-1`` (for per-class sums).

        Returns:
            ``(ids, K)``: ``(M,)`` int64 ids and the number of distinct keys.

        Raises:
            ValueError: if this structure is not key-based.
        """
        if self.keys is None:
            raise ValueError("compact_keys needs a key-based structure (labels or sample ids).")
        unique, ids = torch.unique(self.keys, return_inverse=True)
        return ids, int(unique.numel())


def counted_anchors(num_positives: Tensor, denominator_sizes: Tensor) -> Tensor:
    """Which anchors enter the loss's mean.

    An anchor counts when it has at least one positive and its denominator holds something
    besides that positive. An anchor whose denominator is its single positive (possible only
    with mined pairs) has ``ℓ_i = log(e^l / e^l) = 0`` identically and no gradient; PML drops it
    from the mean (its reducer averages non-zero terms), and so do we, so the mean is not diluted.

    Args:
        num_positives: ``(n,)`` positives per anchor.
        denominator_sizes: ``(n,)`` candidates in each anchor's denominator (positives included).

    Returns:
        ``(n,)`` boolean.
    """
    return (num_positives > 0) & (denominator_sizes > 1)


@dataclass(frozen=True)
class AnchorCounts:
    """How a batch's anchors split.

    Attributes:
        num_anchors: Anchors of this call (this rank's, before any all-reduce).
        without_positives: Anchors with no positive (excluded from the mean).
        trivial: Anchors whose denominator is their single positive (term ≡ 0; excluded).
        negative_pairs: (anchor, negative) pairs over all anchors. When there are none, no
            anchor has anything to be contrasted against and the loss is 0, as in PML.
    """

    num_anchors: int
    without_positives: int
    trivial: int
    negative_pairs: int = 0

    @property
    def counted(self) -> int:
        """Anchors averaged over."""
        return self.num_anchors - self.without_positives - self.trivial

    @staticmethod
    def from_sizes(num_positives: Tensor, denominator_sizes: Tensor) -> AnchorCounts:
        """Counts from per-anchor positive and denominator sizes (``(n,)`` each)."""
        has_positive = num_positives > 0
        trivial = has_positive & (denominator_sizes <= 1)
        return AnchorCounts(
            num_anchors=int(num_positives.numel()),
            without_positives=int((~has_positive).sum()),
            trivial=int(trivial.sum()),
            negative_pairs=int((denominator_sizes - num_positives).sum()),
        )
