"""Tiled SupCon: loss and gradient in row blocks, never holding the ``(N, M)`` similarities.

An autograd function (:class:`supcon.losses.swept.SweptSum`) over the L2-normalised candidates ``z``
(``(M, D)``). It sweeps the anchors in blocks of ``b`` rows; for each block it forms the ``(b, M)``
logits ``z_block z^T / τ`` with one matrix product, masks the self-similarity (and, for mined pairs,
everything outside the anchor's pairs) with ``-inf``, and reduces them to the block's
log-denominators. The gradient needs exactly the same ``(b, M)`` tile: with ``G_ij = ∂ℓ_i/∂l_ij``
(softmax of the row minus ``1/|P(i)|`` on positives), ``∂/∂z = (G z + G^T z_block) / τ``. So the
gradient is accumulated into an ``(M, D)`` buffer in the *same* sweep, while the tile is still in
cache, and backward only scales it by the incoming gradient. Peak memory is ``O(M·D + b·M)``; time
is three ``b×M×D`` products per block (the ``6·N·M·D`` FLOP floor of forward + backward).
Recomputing the tile in backward instead would cost a fourth product and a second ``exp`` sweep for
the same memory bound, so it is not done. The gradient is only formed when autograd needs it
(``torch.is_grad_enabled()`` and ``z`` requires grad); an evaluation call is a single product per
block.

Two block kernels:

* **keys** (labels or sample ids, β = 0): positives share a key, so ``Σ_{p∈P(i)} z_p`` is the
  key's row sum minus ``z_i``. The positive part of both the loss and the gradient then costs
  ``O(M·D)`` in total and the tile only needs the self mask, a row maximum, one ``exp`` and
  one row sum per element. (Folding a constant shift ``1/τ`` into the product instead of the
  row maximum was measured slower on CPU: the ``D + 1``-wide product costs more than the two
  cache-resident passes it saves.)
* **masked** (multi-hot labels, a user mask, mined pairs, or HCL): the block's boolean masks
  come from :meth:`PairStructure.block_masks` and are applied to the tile.

The function is differentiable once (backward with ``create_graph=True`` raises); use
``tiled=False`` for higher-order gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from supcon import blocks
from supcon.losses.hcl import hcl_block_gradient
from supcon.losses.structure import AnchorCounts, PairStructure, counted_anchors
from supcon.losses.swept import swept_sum


def default_block_rows(
    num_anchors: int, num_candidates: int, device: torch.device | str = "cpu"
) -> int:
    """Anchor rows per tile for the device (see :data:`supcon.blocks.TILE_ELEMENTS`)."""
    kind = torch.device(device).type
    budget = blocks.for_device(blocks.TILE_ELEMENTS, kind)
    rows = blocks.rows_per_block(budget, num_candidates, at_least=blocks.MIN_TILE_ROWS)
    return max(1, min(num_anchors, rows))


@dataclass
class TilePlan:
    """Everything the tiled sweep needs besides the embeddings.

    Attributes:
        structure: Positive / denominator structure of the batch.
        inv_tau: ``1 / τ``.
        beta: HCL concentration (0: plain SupCon).
        block_rows: Anchor rows per tile.
        grad_cols: Candidates ``[0, grad_cols)`` receive gradient; the rest (reference rows
            that do not require grad) get zero without paying for their ``G^T z`` product.
        counts: Filled by the forward sweep.
    """

    structure: PairStructure
    inv_tau: float
    beta: float
    block_rows: int
    grad_cols: int
    counts: AnchorCounts | None = field(default=None)


def tiled_loss_sum(z: Tensor, plan: TilePlan) -> tuple[Tensor, AnchorCounts]:
    """Sum of the counted anchors' losses, via :class:`supcon.losses.swept.SweptSum`.

    Args:
        z: ``(M, D)`` L2-normalised candidates (anchors at ``plan.structure.anchor_offset``).
        plan: The sweep's parameters.

    Returns:
        ``(total, counts)``: a 0-dim tensor in ``z.dtype`` tied to ``z``'s graph, and the
        anchor counts.
    """
    return swept_sum(z, _sweep, plan, "tiled")


@torch.no_grad()
def _sweep(
    z: Tensor, plan: TilePlan, want_grad: bool
) -> tuple[Tensor, Tensor | None, AnchorCounts]:
    structure = plan.structure
    if structure.kind == "keys" and plan.beta == 0.0:
        return _sweep_keys(z, plan, want_grad)
    return _sweep_masked(z, plan, want_grad)


def _row_max(tile: Tensor) -> Tensor:
    """Row maxima, with 0 for rows that are entirely ``-inf`` (so ``exp(tile - max)`` is 0)."""
    peak = tile.amax(dim=1)
    return torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))


def _sweep_keys(
    z: Tensor, plan: TilePlan, want_grad: bool
) -> tuple[Tensor, Tensor | None, AnchorCounts]:
    structure = plan.structure
    num_anchors, num_cols = structure.num_anchors, structure.num_candidates
    offset, inv_tau = structure.anchor_offset, plan.inv_tau
    ids, num_keys = structure.compact_keys()
    z_anchor = z[offset : offset + num_anchors]
    anchor_ids = ids[offset : offset + num_anchors]

    # Positive part in O(M·D): Σ_{p∈P(i)} z_p = (sum of the anchor's key's rows) − z_i, with
    # the sums in float64 and every (rows, D) temporary bounded by chunking.
    key_sum = _key_sums(z, ids, num_keys)
    num_pos = torch.bincount(ids, minlength=num_keys)[anchor_ids] - 1
    den_size = torch.full_like(num_pos, num_cols - 1)
    counted = counted_anchors(num_pos, den_size)
    inv_pos = torch.where(counted, 1.0 / num_pos.clamp(min=1).double(), 0.0)
    mean_pos_logit = torch.empty(num_anchors, dtype=torch.float64, device=z.device)
    for lo, hi in _chunks(num_anchors):
        za = z_anchor[lo:hi].double()
        pos_dot = (za * (key_sum[anchor_ids[lo:hi]] - za)).sum(dim=1)
        mean_pos_logit[lo:hi] = pos_dot * inv_tau * inv_pos[lo:hi]

    lse = torch.zeros(num_anchors, dtype=z.dtype, device=z.device)
    grad = torch.zeros_like(z) if want_grad else None
    scaled = z_anchor * inv_tau
    rows, on_cpu = plan.block_rows, z.device.type == "cpu"
    tile_buf = torch.empty(min(rows, num_anchors), num_cols, dtype=z.dtype, device=z.device)
    for start in range(0, num_anchors, rows):
        stop = min(start + rows, num_anchors)
        block_counted = counted[start:stop]
        if on_cpu and not bool(block_counted.any()):
            continue  # (a host sync per block is not worth it on an accelerator)
        tile = tile_buf[: stop - start]
        torch.mm(scaled[start:stop], z.T, out=tile)
        tile.diagonal(offset=offset + start).fill_(float("-inf"))
        peak = _row_max(tile)
        tile.sub_(peak[:, None]).exp_()
        den = tile.sum(dim=1)
        lse[start:stop] = peak + torch.log(den)
        if grad is not None:
            # G = diag(coef) · tile is the softmax of the counted rows; the row scaling is
            # applied to the (b, D) factors instead of the (b, M) tile, saving a pass over it.
            coef = torch.where(block_counted, 1.0 / den, torch.zeros_like(den))[:, None]
            grad[offset + start : offset + stop].add_(torch.mm(tile, z).mul_(coef))
            cols = plan.grad_cols
            grad[:cols].addmm_(tile[:, :cols].T, z_anchor[start:stop] * coef)

    losses = torch.where(counted, lse.double() - mean_pos_logit, 0.0)
    total = losses.sum().to(z.dtype)
    if grad is not None:
        # ∂(−mean_p l_ip)/∂l_ij = −1/|P(i)| for every positive j of anchor i. Row i receives
        # −(S_k − z_i)/|P(i)|; column j receives −Σ_{anchors a ≠ j of key k} z_a/|P(a)|, i.e.
        # −T_k plus its own term back when j is itself an anchor.
        key_weighted = _key_sums(z_anchor, anchor_ids, num_keys, weights=inv_pos)
        for lo, hi in _chunks(num_anchors):
            za = z_anchor[lo:hi].double()
            own = inv_pos[lo:hi, None] * (key_sum[anchor_ids[lo:hi]] - 2.0 * za)
            grad[offset + lo : offset + hi] -= own.to(z.dtype)
        for lo, hi in _chunks(plan.grad_cols):
            grad[lo:hi] -= key_weighted[ids[lo:hi]].to(z.dtype)
        grad.mul_(inv_tau)
    return total, grad, AnchorCounts.from_sizes(num_pos, den_size)


def _chunks(rows: int) -> list[tuple[int, int]]:
    step = blocks.CHUNK_ROWS
    return [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]


def _key_sums(x: Tensor, ids: Tensor, num_keys: int, weights: Tensor | None = None) -> Tensor:
    """``(K, D)`` float64 per-key sums of the rows of ``x`` (optionally weighted), chunked."""
    out = torch.zeros(num_keys, x.shape[1], dtype=torch.float64, device=x.device)
    for lo, hi in _chunks(x.shape[0]):
        rows = x[lo:hi].double()
        if weights is not None:
            rows.mul_(weights[lo:hi, None])
        out.index_add_(0, ids[lo:hi], rows)
    return out


def _sweep_masked(
    z: Tensor, plan: TilePlan, want_grad: bool
) -> tuple[Tensor, Tensor | None, AnchorCounts]:
    structure = plan.structure
    num_anchors, num_cols = structure.num_anchors, structure.num_candidates
    offset, inv_tau, beta = structure.anchor_offset, plan.inv_tau, plan.beta
    z_anchor = z[offset : offset + num_anchors]
    scaled = z_anchor * inv_tau
    grad = torch.zeros_like(z) if want_grad else None
    total = torch.zeros((), dtype=torch.float64, device=z.device)
    num_pos_all, den_size_all = [], []
    rows, on_cpu = plan.block_rows, z.device.type == "cpu"
    tile_buf = torch.empty(min(rows, num_anchors), num_cols, dtype=z.dtype, device=z.device)
    for start in range(0, num_anchors, rows):
        stop = min(start + rows, num_anchors)
        positive, in_denominator = structure.block_masks(start, stop)
        num_pos = positive.sum(dim=1)
        if in_denominator is None:
            den_size = torch.full_like(num_pos, num_cols - 1)
        else:
            den_size = in_denominator.sum(dim=1)
        num_pos_all.append(num_pos)
        den_size_all.append(den_size)
        counted = counted_anchors(num_pos, den_size)
        if on_cpu and not bool(counted.any()):
            continue
        inv_pos = torch.where(counted, 1.0 / num_pos.clamp(min=1).to(z.dtype), 0.0)

        tile = tile_buf[: stop - start]
        torch.mm(scaled[start:stop], z.T, out=tile)
        tile.diagonal(offset=offset + start).fill_(float("-inf"))
        if in_denominator is not None:
            tile.masked_fill_(~in_denominator, float("-inf"))
        pos_logit_sum = torch.where(positive, tile, 0.0).sum(dim=1)

        if beta == 0.0:
            peak = _row_max(tile)
            tile.sub_(peak[:, None]).exp_()
            den = tile.sum(dim=1)
            log_den = peak + torch.log(den.clamp(min=torch.finfo(den.dtype).tiny))
            d_log_den = tile
            row_scale = torch.where(counted, 1.0 / den, torch.zeros_like(den))
        else:
            negative = positive.logical_not()
            if in_denominator is not None:
                negative &= in_denominator
            else:
                negative.diagonal(offset=offset + start).fill_(False)
            log_den, d_log_den = hcl_block_gradient(tile, positive, negative, beta)
            row_scale = counted.to(z.dtype)

        losses = torch.where(counted, log_den.double() - pos_logit_sum.double() * inv_pos, 0.0)
        total += losses.sum()
        if grad is not None:
            coef = d_log_den.mul_(row_scale[:, None])
            coef.sub_(positive.to(coef.dtype).mul_(inv_pos[:, None]))
            grad[offset + start : offset + stop].addmm_(coef, z)
            grad[: plan.grad_cols].addmm_(coef[:, : plan.grad_cols].T, z_anchor[start:stop])
    if grad is not None:
        grad.mul_(inv_tau)
    if num_pos_all:
        counts = AnchorCounts.from_sizes(torch.cat(num_pos_all), torch.cat(den_size_all))
    else:
        counts = AnchorCounts(0, 0, 0)
    return total.to(z.dtype), grad, counts
