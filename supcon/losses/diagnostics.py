r"""What a SupCon batch says about the embedding: loss bounds, alignment, uniformity, collapse.

**Loss bounds.** Take anchor ``i`` with ``P ≥ 1`` positives and ``Q ≥ 0`` negatives in its
denominator, ``a = 1/τ``, and logits ``l = s/τ ∈ [−a, a]`` for cosine similarities
``s ∈ [−1, 1]``. Its term is

    ℓ_i = log( Σ_p e^{l_p} + Σ_n e^{l_n} ) − (1/P) Σ_p l_p .

ℓ_i grows with every negative logit, so both extremes put all negatives at one end. In the
positive logits ℓ_i is convex (log-sum-exp plus a linear term) and symmetric.

*Lower bound.* Negatives at ``−a``; by convexity and symmetry the minimum over the positives
lies on the diagonal ``l_p = t``, where ``ℓ = log(P + Q e^{−a−t})`` decreases in ``t``, so
``t = a``:

    ℓ_min = log( P + Q e^{−2/τ} ).

*Upper bound.* Negatives at ``+a``; a convex function on a box peaks at a vertex, and by
symmetry only the number ``k`` of positives at ``+a`` (the other ``P − k`` at ``−a``) matters:

    g(k) = 2a − 2ak/P + log( k + Q + (P − k) e^{−2a} ),    ℓ_max = max_{k = 0..P} g(k).

``g`` is concave in ``k`` with stationary point
``k* = P/(2a) − (Q + P e^{−2a}) / (1 − e^{−2a})``, so the integer maximum is at ``⌊k*⌋`` or
``⌈k*⌉`` clamped to ``[0, P]``. Whenever ``Q ≥ Pτ/2`` (any ordinary batch) ``k* ≤ 0`` and

    ℓ_max = log( P + Q e^{2/τ} ),

the mirror image of the lower bound. With ``P = 1`` and ``Q = 2N − 2`` (SimCLR's NT-Xent) this
is ``log(1 + (2N − 2) e^{2/τ})``, the upper bound of Ågren (2022, arXiv:2205.03169), and the
lower bound is ``log(1 + (2N − 2) e^{−2/τ})``.

The batch loss is the mean of ℓ_i over counted anchors, so it lies between the means of these
per-anchor bounds. Both are bounds over the box of similarities: each anchor's upper bound is
attainable on its own, and the lower bound needs negatives antipodal to the anchor, which every
anchor can have simultaneously only with two classes. ``loss_position = (L − L_min) / (L_max −
L_min)`` places the current loss between them (0: perfectly separated, 1: adversarial).

**Alignment and uniformity** (Wang & Isola, ICML 2020) on unit vectors:
``alignment = E_{positive pairs} ‖z_i − z_j‖²`` (α = 2) ``= 2 − 2·mean positive similarity``;
``uniformity = log E_{i≠j} exp(−2 ‖z_i − z_j‖²)`` (t = 2) ``= log E exp(4 s_ij − 4)``, over
all distinct pairs of batch rows (anchors × batch rows for ``contrast_mode="one"``); it ranges
from ``−4`` (antipodal pairs) towards 0 (everything on one point); about −3.9 is spread out
in high dimension.

**Collapse alarm.** Complete collapse (every row the same direction) shows as a mean pairwise
similarity near 1; :attr:`BatchDiagnostics.collapsed` is set when it reaches
``collapse_threshold`` (0.9 by default). :attr:`BatchDiagnostics.effective_rank` (Roy &
Vetterli 2007: ``exp`` of the entropy of the normalised singular values) additionally shows
dimensional collapse; it is reported but does not raise the alarm, since an ideal SupCon
solution for ``C`` classes legitimately spans only ``C − 1`` dimensions.

Everything is one gradient-free sweep over row blocks (the cost of a third of a loss
forward + backward), so it can be logged every few hundred steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from supcon.losses.functional import l2_normalize
from supcon.losses.hcl import safe_logsumexp
from supcon.losses.inputs import check_temperature, prepare_batch
from supcon.losses.structure import counted_anchors
from supcon.losses.tiled import default_block_rows


def loss_bounds(
    num_positives: Tensor, num_negatives: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Smallest and largest value of each anchor's SupCon term over cosines in ``[-1, 1]``.

    Args:
        num_positives: ``(n,)`` positives per anchor (``P ≥ 1``).
        num_negatives: ``(n,)`` negatives per anchor (``Q ≥ 0``; denominator minus positives).
        temperature: τ > 0.

    Returns:
        ``(lower, upper)``, ``(n,)`` float64 each; see the module docstring for the derivation.

    Raises:
        ValueError: if some anchor has no positive, or τ is not positive.
    """
    tau = check_temperature(temperature)
    p = torch.as_tensor(num_positives, dtype=torch.float64)
    q = torch.as_tensor(num_negatives, dtype=torch.float64)
    if bool((p < 1).any()) or bool((q < 0).any()):
        raise ValueError(
            "num_positives must be >= 1 and num_negatives >= 0 for every anchor; drop the "
            "anchors without positives first."
        )
    a = 1.0 / tau
    shrink = math.exp(-2.0 * a)  # e^{-2a}, may underflow to 0: fine
    lower = torch.log(p + q * shrink)

    def g(k: Tensor) -> Tensor:
        return 2 * a - 2 * a * k / p + torch.log(k + q + (p - k) * shrink)

    k_star = p / (2 * a) - (q + p * shrink) / (1.0 - shrink)
    k_lo = torch.clamp(torch.floor(k_star), min=torch.zeros_like(p), max=p)
    k_hi = torch.clamp(torch.ceil(k_star), min=torch.zeros_like(p), max=p)
    upper = torch.maximum(g(k_lo), g(k_hi))
    return lower, upper


@dataclass(frozen=True)
class BatchDiagnostics:
    """Health figures of one batch (all plain floats, ready for a CSV / TensorBoard log).

    Attributes:
        loss: The SupCon loss (plain L_out, no ``base_temperature`` or HCL).
        loss_lower_bound: Mean over counted anchors of ``log(P + Q e^{-2/τ})``.
        loss_upper_bound: Mean over counted anchors of the per-anchor maximum.
        loss_position: ``(loss − lower) / (upper − lower)`` in ``[0, 1]``.
        alignment: Mean squared distance of positive pairs (Wang & Isola, α = 2).
        uniformity: ``log E exp(−2‖z_i − z_j‖²)`` over distinct batch pairs (t = 2).
        mean_positive_similarity: Mean cosine over positive (anchor, candidate) pairs.
        mean_negative_similarity: Mean cosine over negative (anchor, candidate) pairs.
        mean_similarity: Mean cosine over distinct batch pairs.
        effective_rank: Effective rank of the normalised batch (1 … D).
        collapsed: ``mean_similarity ≥ collapse_threshold``.
        num_anchors_in_mean: Anchors the loss averages over.
    """

    loss: float
    loss_lower_bound: float
    loss_upper_bound: float
    loss_position: float
    alignment: float
    uniformity: float
    mean_positive_similarity: float
    mean_negative_similarity: float
    mean_similarity: float
    effective_rank: float
    collapsed: bool
    num_anchors_in_mean: int

    def as_dict(self) -> dict[str, float | int | bool]:
        """The fields as a flat dict."""
        return asdict(self)


def effective_rank(z: Tensor) -> float:
    """Effective rank (Roy & Vetterli 2007) of the rows ``z`` (``(N, D)``).

    Returns:
        ``exp(H(σ / Σσ))`` over the singular values σ, between 1 and ``min(N, D)``.
    """
    z = z.double()
    gram = z.T @ z if z.shape[0] >= z.shape[1] else z @ z.T
    sigma = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt()
    total = sigma.sum()
    if float(total) == 0.0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def batch_diagnostics(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    temperature: float = 0.1,
    contrast_mode: str = "all",
    collapse_threshold: float = 0.9,
    block_size: int | None = None,
) -> BatchDiagnostics:
    """Loss bounds, alignment, uniformity, similarities and a collapse alarm for one batch.

    Takes the same batch arguments as :func:`supcon.losses.supcon_loss` (no references, no
    gather: diagnose each rank's batch, or the gathered one yourself).

    Args:
        embeddings: ``(N, D)`` or ``(B, V, D)``.
        labels: Class ids or multi-hot labels, as for the loss.
        sample_ids: ``(N,)`` view grouping, as for the loss.
        mask: ``(N, N)`` boolean positives, as for the loss.
        indices_tuple: PML miner output, as for the loss.
        temperature: τ of the loss being diagnosed.
        contrast_mode: ``"all"`` or ``"one"``.
        collapse_threshold: Mean pairwise cosine at or above which ``collapsed`` is set.
        block_size: Anchor rows per tile (``None``: automatic).

    Returns:
        The batch's :class:`BatchDiagnostics`. Averages over an empty set (e.g. no negative
        pairs) are NaN; bounds and loss are 0 when no anchor has a positive.

    Raises:
        ValueError: on malformed input, as the loss does.
    """
    tau = check_temperature(temperature)
    if not (0.0 < float(collapse_threshold) <= 1.0):
        raise ValueError(
            f"collapse_threshold must be in (0, 1] (a mean cosine), got {collapse_threshold!r}."
        )
    batch = prepare_batch(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        contrast_mode=contrast_mode,
    )
    structure = batch.structure
    z = l2_normalize(batch.candidates)
    num_anchors, num_cols = structure.num_anchors, structure.num_candidates
    rows = block_size or default_block_rows(num_anchors, num_cols, z.device)
    lse, pos_sum, den_sum = (
        torch.zeros(num_anchors, dtype=torch.float64, device=z.device) for _ in range(3)
    )
    num_pos = torch.zeros(num_anchors, dtype=torch.long, device=z.device)
    num_den = torch.zeros_like(num_pos)
    pair_sum, pair_count = 0.0, 0
    uniform_terms: list[Tensor] = []
    neg_inf = float("-inf")
    for start in range(0, num_anchors, rows):
        stop = min(start + rows, num_anchors)
        sim = z[start:stop] @ z.T  # (b, M) cosines (no gather here: anchors are rows 0..N_a)
        positive, in_denominator = structure.block(start, stop)
        num_pos[start:stop] = positive.sum(dim=1)
        num_den[start:stop] = in_denominator.sum(dim=1)
        pos_sum[start:stop] = torch.where(positive, sim, 0.0).sum(dim=1).double()
        den_rows = torch.where(in_denominator, sim, 0.0).sum(dim=1).double()
        den_sum[start:stop] = den_rows
        lse[start:stop] = safe_logsumexp(torch.where(in_denominator, sim / tau, neg_inf)).double()
        # Distinct pairs (i ≠ j) for uniformity and the mean similarity; without a miner they
        # are exactly the denominator pairs.
        if structure.kind == "pairs":
            distinct = structure.not_self(start, stop)
            row_sums = torch.where(distinct, sim, 0.0).sum(dim=1).double()
        else:
            distinct, row_sums = in_denominator, den_rows
        pair_sum += float(row_sums.sum())
        pair_count += int(distinct.sum())
        gauss = safe_logsumexp(torch.where(distinct, 4.0 * sim - 4.0, neg_inf))
        uniform_terms.append(gauss.double())
    num_neg = num_den - num_pos
    neg_sum = den_sum - pos_sum

    counted = counted_anchors(num_pos, num_pos + num_neg)
    n_counted = int(counted.sum())
    if n_counted:
        c_pos = num_pos[counted].double()
        losses = lse[counted] - pos_sum[counted] / (tau * c_pos)
        lower, upper = loss_bounds(c_pos, num_neg[counted], tau)
        loss, lo, hi = float(losses.mean()), float(lower.mean()), float(upper.mean())
        position = (loss - lo) / (hi - lo) if hi > lo else 0.0
    else:
        loss = lo = hi = position = 0.0
    total_pos, total_neg = int(num_pos.sum()), int(num_neg.sum())
    mean_pos = float(pos_sum.sum()) / total_pos if total_pos else float("nan")
    mean_neg = float(neg_sum.sum()) / total_neg if total_neg else float("nan")
    mean_sim = pair_sum / pair_count if pair_count else float("nan")
    uniformity = (
        float(torch.logsumexp(torch.cat(uniform_terms), 0)) - math.log(pair_count)
        if pair_count
        else float("nan")
    )
    return BatchDiagnostics(
        loss=loss,
        loss_lower_bound=lo,
        loss_upper_bound=hi,
        loss_position=position,
        alignment=2.0 - 2.0 * mean_pos if total_pos else float("nan"),
        uniformity=uniformity,
        mean_positive_similarity=mean_pos,
        mean_negative_similarity=mean_neg,
        mean_similarity=mean_sim,
        effective_rank=effective_rank(z),
        collapsed=bool(pair_count and mean_sim >= collapse_threshold),
        num_anchors_in_mean=n_counted,
    )
