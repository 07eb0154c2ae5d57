"""Dense SupCon: the whole ``(N_a, M)`` logit matrix at once, differentiated by autograd.

This is the straightforward implementation of the formula, kept for small batches (where one
matrix is cheapest) and as the independent check of the tiled path's hand-written gradient:
both paths must agree to floating-point rounding. It is also the path that supports
higher-order gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from supcon.losses.hcl import hcl_log_denominator, safe_logsumexp
from supcon.losses.structure import AnchorCounts, PairStructure, counted_anchors


def dense_anchor_losses(
    z: Tensor, structure: PairStructure, inv_tau: float, beta: float = 0.0
) -> tuple[Tensor, Tensor, AnchorCounts]:
    """Per-anchor SupCon (or HCL) losses with the full logit matrix.

    Args:
        z: ``(M, D)`` L2-normalised candidates; anchors are rows
            ``[anchor_offset, anchor_offset + N_a)``.
        structure: Positive / denominator structure.
        inv_tau: ``1 / τ``.
        beta: HCL concentration; 0 gives plain SupCon.

    Returns:
        ``(losses, counted, counts)``: ``(N_a,)`` losses (0 where not counted), the ``(N_a,)``
        boolean mask of anchors in the mean, and the anchor counts.
    """
    offset, num_anchors = structure.anchor_offset, structure.num_anchors
    logits = (z[offset : offset + num_anchors] * inv_tau) @ z.T
    positive, in_denominator = structure.block_masks(0, num_anchors)
    num_pos = positive.sum(dim=1)
    # Mask (never subtract) everything outside the denominator, self-similarity included.
    # (In place is fine: the matmul's backward needs only its inputs.)
    logits.diagonal(offset=offset).fill_(float("-inf"))
    if in_denominator is None:
        den_size = torch.full_like(num_pos, structure.num_candidates - 1)
    else:
        den_size = in_denominator.sum(dim=1)
        logits = logits.masked_fill(~in_denominator, float("-inf"))
    counted = counted_anchors(num_pos, den_size)
    if beta == 0.0:
        log_den = safe_logsumexp(logits)
    else:
        negative = ~positive
        if in_denominator is not None:
            negative &= in_denominator
        else:
            negative.diagonal(offset=offset).fill_(False)
        log_den = hcl_log_denominator(logits, positive, negative, beta)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    mean_pos = torch.where(positive, logits, zero).sum(dim=1) / num_pos.clamp(min=1)
    losses = torch.where(counted, log_den - mean_pos, zero)
    return losses, counted, AnchorCounts.from_sizes(num_pos, den_size)
