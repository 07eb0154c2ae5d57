"""SupCon / NT-Xent as pure tensor functions.

For anchor ``i`` with positives ``P(i)`` and denominator set ``K(i)`` (every other row unless a
miner restricts it), with ``s`` the cosine similarity and ``τ`` the temperature::

    ℓ_i = logsumexp_{a ∈ K(i)} (s_ia / τ) − mean_{p ∈ P(i)} (s_ip / τ)

which is SupCon's L_out (Khosla et al. 2020, eq. 2) and, with one positive per anchor, SimCLR's
NT-Xent (Chen et al. 2020). The loss is the mean of ``ℓ_i`` over anchors with at least one
positive; the others are excluded and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from supcon.losses.inputs import FlatBatch, check_temperature, prepare_batch


@dataclass(frozen=True)
class LossStats:
    """What one loss call saw.

    Attributes:
        num_anchors: Anchors in the batch.
        num_anchors_without_positives: Anchors excluded from the mean because nothing in the
            batch (or the mined pairs) is a positive for them.
    """

    num_anchors: int
    num_anchors_without_positives: int


_warned_no_positives = False


def _warn_no_positives_once() -> None:
    global _warned_no_positives
    if not _warned_no_positives:
        _warned_no_positives = True
        warnings.warn(
            "supcon: no anchor in this batch has a positive, so the loss is 0. Use a sampler "
            "that puts several samples per class in a batch (supcon.samplers.MPerClassSampler) "
            "or pass two or more views per sample.",
            RuntimeWarning,
            stacklevel=3,
        )


def anchor_losses_dense(batch: FlatBatch, temperature: float) -> tuple[Tensor, Tensor]:
    """Per-anchor SupCon losses with the full ``(N_a, M)`` similarity matrix.

    Args:
        batch: A validated batch from :func:`prepare_batch`.
        temperature: τ > 0.

    Returns:
        ``(losses, has_positive)``: ``(N_a,)`` losses (0 where there is no positive) and the
        ``(N_a,)`` boolean mask of anchors that have at least one positive.
    """
    z = F.normalize(batch.candidates, dim=1)
    logits = (z[: batch.num_anchors] @ z.T) / temperature
    positive, in_denominator = batch.structure.block(0, batch.num_anchors)
    # Mask (never subtract) the excluded entries, self-similarity included.
    log_denominator = torch.logsumexp(logits.masked_fill(~in_denominator, float("-inf")), dim=1)
    num_positives = positive.sum(dim=1)
    has_positive = num_positives > 0
    positive_logit_sum = torch.where(positive, logits, torch.zeros_like(logits)).sum(dim=1)
    mean_positive_logit = positive_logit_sum / num_positives.clamp(min=1)
    losses = torch.where(
        has_positive, log_denominator - mean_positive_logit, torch.zeros_like(log_denominator)
    )
    return losses, has_positive


def reduce_anchor_losses(
    losses: Tensor, has_positive: Tensor, anchor_source: Tensor
) -> tuple[Tensor, LossStats]:
    """Average per-anchor losses over anchors with positives.

    Args:
        losses: ``(N_a,)`` per-anchor losses.
        has_positive: ``(N_a,)`` boolean.
        anchor_source: A tensor in the autograd graph, used to return a graph-tied zero.

    Returns:
        The scalar loss and the call's :class:`LossStats`.
    """
    count = int(has_positive.sum())
    stats = LossStats(len(losses), len(losses) - count)
    if count == 0:
        _warn_no_positives_once()
        return anchor_source.sum() * 0.0, stats
    return losses.sum() / count, stats


def supcon_loss_with_stats(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    contrast_mode: str = "all",
) -> tuple[Tensor, LossStats]:
    """:func:`supcon_loss` that also returns :class:`LossStats`."""
    tau = check_temperature(temperature)
    scale = (
        1.0
        if base_temperature is None
        else tau / check_temperature(base_temperature, "base_temperature")
    )
    batch = prepare_batch(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        contrast_mode=contrast_mode,
    )
    losses, has_positive = anchor_losses_dense(batch, tau)
    loss, stats = reduce_anchor_losses(losses, has_positive, embeddings)
    return (loss * scale).to(embeddings.dtype), stats


def supcon_loss(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    contrast_mode: str = "all",
) -> Tensor:
    """Supervised contrastive loss (SupCon L_out; NT-Xent with one positive per anchor).

    Args:
        embeddings: ``(N, D)`` embeddings, or ``(B, V, D)`` = V augmented views of B samples.
            L2-normalised inside; half-precision inputs are computed in float32.
        labels: ``(N,)``/``(B,)`` integer class ids, or ``(N, C)``/``(B, C)`` multi-hot (positives
            share at least one class). ``None`` with ``(B, V, D)`` makes the other views of each
            sample its positives.
        sample_ids: ``(N,)`` ids for ``(N, D)`` input: rows with the same id are views of one
            sample and each other's positives.
        mask: ``(N, N)`` boolean positives over the flattened batch (rows view-major for
            ``(B, V, D)`` input: row ``v * B + b``). The diagonal is ignored.
        indices_tuple: A PML miner's output, ``(a1, p, a2, n)`` pairs or ``(a, p, n)`` triplets,
            over the flattened batch; positives and denominators are restricted to those pairs.
        ref_embeddings: ``(R, D)`` extra candidates (e.g. a memory queue) contrasted against but
            never used as anchors.
        ref_labels: ``(R,)`` (or ``(R, C)``) labels of ``ref_embeddings``.
        temperature: τ > 0.
        base_temperature: If set, the loss is multiplied by ``τ / base_temperature`` as in
            SupContrast's code (0.07 there). ``None`` (default) gives plain L_out.
        contrast_mode: ``"all"``: every view is an anchor; ``"one"``: only view 0 anchors.

    Returns:
        Scalar loss: the mean over anchors with at least one positive; 0 (still in the graph)
        when no anchor has one.

    Raises:
        ValueError: on malformed or non-finite inputs, naming the argument.
    """
    loss, _ = supcon_loss_with_stats(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        temperature=temperature,
        base_temperature=base_temperature,
        contrast_mode=contrast_mode,
    )
    return loss
