"""Sparse SupCon for mined pairs: cost proportional to the pairs, not to ``N × M``.

A miner such as :class:`supcon.miners.TopKNegativeMiner` keeps every positive and ``k``
negatives per anchor, so an anchor's denominator holds ``O(k)`` candidates out of ``M``. Forming
full ``(block, M)`` tiles would then spend almost all of its work on entries that are masked
away. This path instead evaluates only the mined (anchor, candidate) pairs:

* the pairs are de-duplicated (as PML's masks do) and sorted by anchor then candidate once,
  which is the layout of a CSR matrix over ``(N_a, M)``;
* the pairs' logits ``z_a · z_c / τ`` are one sampled dense product on that pattern
  (``torch.sparse.sampled_addmm``), without ``(pairs, D)`` gathers;
* per-anchor log-sum-exps and positive means are segment reductions (``scatter_reduce`` /
  ``index_add``);
* as in the tiled path, the gradient ``∂ℓ_a/∂l_ac = softmax − [c ∈ P(a)]/|P(a)|`` is formed in
  the same pass, as two sparse-dense products with that coefficient matrix, so backward only
  scales it.

Time is ``O(pairs · D)``; memory ``O(pairs + M · D)`` (the gradient buffer).
HCL reweighting is not implemented here (the tiled path handles it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from supcon.losses.structure import AnchorCounts, PairStructure, counted_anchors
from supcon.losses.swept import swept_sum


@dataclass
class SparsePairs:
    """De-duplicated mined pairs of a batch, sorted by anchor.

    Attributes:
        rows: ``(P,)`` anchor rows (relative to the anchor range), sorted.
        cols: ``(P,)`` candidate columns.
        positive: ``(P,)`` boolean: the pair is a positive (else a denominator-only negative).
        num_anchors: ``N_a``.
    """

    rows: Tensor
    cols: Tensor
    positive: Tensor
    num_anchors: int

    @staticmethod
    def from_structure(structure: PairStructure) -> SparsePairs:
        """The denominator pairs (positives ∪ negatives, self-pairs removed) of ``structure``."""
        assert structure.pos_pairs is not None and structure.neg_pairs is not None
        num_anchors, num_cols = structure.num_anchors, structure.num_candidates
        offset = structure.anchor_offset

        def keys(pairs: tuple[Tensor, Tensor]) -> Tensor:
            rows, cols = pairs
            keep = (rows >= 0) & (rows < num_anchors) & (cols != rows + offset)
            return torch.unique(rows[keep] * num_cols + cols[keep])

        pos_keys = keys(structure.pos_pairs)  # sorted
        all_keys = torch.unique(torch.cat([pos_keys, keys(structure.neg_pairs)]))
        # Membership by binary search in the sorted positives (much faster than torch.isin).
        at = torch.searchsorted(pos_keys, all_keys).clamp_(max=max(len(pos_keys) - 1, 0))
        positive = (
            pos_keys[at] == all_keys
            if len(pos_keys)
            else torch.zeros_like(all_keys, dtype=torch.bool)
        )
        return SparsePairs(
            rows=all_keys // num_cols,
            cols=all_keys % num_cols,
            positive=positive,
            num_anchors=num_anchors,
        )

    def __len__(self) -> int:
        return int(self.rows.numel())


@dataclass
class SparsePlan:
    """Parameters of the sparse sweep.

    Attributes:
        pairs: The mined pairs.
        anchor_offset: Column of anchor row 0.
        inv_tau: ``1 / τ``.
        counts: Filled by the forward pass.
    """

    pairs: SparsePairs
    anchor_offset: int
    inv_tau: float
    counts: AnchorCounts | None = field(default=None)


def sparse_loss_sum(z: Tensor, plan: SparsePlan) -> tuple[Tensor, AnchorCounts]:
    """Sum of the counted anchors' losses over mined pairs, via :func:`swept_sum`.

    Args:
        z: ``(M, D)`` L2-normalised candidates.
        plan: Pairs and parameters.

    Returns:
        ``(total, counts)``.
    """
    return swept_sum(z, _sparse_sweep, plan, "sparse")


@torch.no_grad()
def _sparse_sweep(
    z: Tensor, plan: SparsePlan, want_grad: bool
) -> tuple[Tensor, Tensor | None, AnchorCounts]:
    pairs, offset, inv_tau = plan.pairs, plan.anchor_offset, plan.inv_tau
    num_anchors, device = pairs.num_anchors, z.device
    rows, cols, positive = pairs.rows, pairs.cols, pairs.positive

    # The pairs are unique and sorted by (anchor, column): the (N_a, M) pattern in CSR order.
    # Logits are a sampled dense product on that pattern (no (P, D) gathers), and the gradient
    # two sparse-dense products with the coefficient matrix.
    den_size = torch.bincount(rows, minlength=num_anchors)
    crow = torch.zeros(num_anchors + 1, dtype=torch.long, device=device)
    torch.cumsum(den_size, 0, out=crow[1:])
    z_anchor = z[offset : offset + num_anchors]
    shape = (num_anchors, z.shape[0])
    logits = torch.sparse.sampled_addmm(
        _csr(crow, cols, torch.zeros(len(pairs), dtype=z.dtype, device=device), shape),
        z_anchor * inv_tau,
        z.T,
        beta=0.0,
    ).values()

    num_pos = torch.zeros(num_anchors, dtype=torch.long, device=device)
    num_pos.index_add_(0, rows, positive.long())
    counted = counted_anchors(num_pos, den_size)
    counts = AnchorCounts.from_sizes(num_pos, den_size)

    peak = torch.full((num_anchors,), float("-inf"), dtype=z.dtype, device=device)
    peak.scatter_reduce_(0, rows, logits, reduce="amax", include_self=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    expo = torch.exp(logits - peak[rows])
    den = torch.zeros(num_anchors, dtype=z.dtype, device=device).index_add_(0, rows, expo)
    tiny = torch.finfo(z.dtype).tiny
    lse = peak.double() + torch.log(den.clamp(min=tiny)).double()
    pos_sum = torch.zeros(num_anchors, dtype=torch.float64, device=device)
    pos_sum.index_add_(0, rows, torch.where(positive, logits, 0.0).double())
    inv_pos = torch.where(counted, 1.0 / num_pos.clamp(min=1).double(), 0.0)
    losses = torch.where(counted, lse - pos_sum * inv_pos, 0.0)
    total = losses.sum().to(z.dtype)
    if not want_grad:
        return total, None, counts

    # ∂ℓ_a/∂l_ac for counted anchors: softmax over the anchor's pairs minus 1/|P(a)| on positives.
    row_scale = torch.where(counted, 1.0 / den.clamp(min=tiny), torch.zeros_like(den))
    coef = expo.mul_(row_scale[rows])
    coef -= torch.where(positive, inv_pos.to(z.dtype)[rows], 0.0)
    coef_matrix = _csr(crow, cols, coef, shape)
    grad = torch.zeros_like(z)
    grad[offset : offset + num_anchors] = coef_matrix @ z
    grad += coef_matrix.t() @ z_anchor
    grad.mul_(inv_tau)
    return total, grad, counts


def _csr(crow: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR matrix, without PyTorch's one-time "sparse CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # Sorted, unique pairs satisfy CSR's invariants by construction: skip the check.
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)
