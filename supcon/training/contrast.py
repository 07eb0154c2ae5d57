"""The loss of one training step: this rank's embeddings against the whole (global) batch."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from supcon.distributed import all_gather_no_grad, all_gather_with_grad, is_distributed


def batch_loss(
    loss_fn: Callable[..., Tensor],
    embeddings: Tensor,
    labels: Tensor | None,
    views: int,
    miner: nn.Module | None = None,
) -> Tensor:
    """SupCon loss of a step's embeddings, over every rank's rows when distributed.

    Under DDP every rank gathers all ranks' embeddings (with gradient) and labels and computes
    the loss of the whole global batch, so the value is the same everywhere. The gather's
    backward sums the identical per-rank gradients (``W · ∂L/∂e``) and DDP divides by ``W``,
    so parameter gradients equal the single-process gradient of the whole batch.

    Args:
        loss_fn: A :class:`supcon.SupConLoss`-like callable.
        embeddings: ``(b·V, D)`` this rank's embeddings, sample-major (the ``V`` views of
            sample 0 first).
        labels: ``(b,)`` class ids, or ``None`` (positives are the other views: NT-Xent).
        views: ``V``.
        miner: Optional miner; it sees ``(N, D)`` rows flattened view-major with repeated
            labels, and its pairs restrict the loss.

    Returns:
        The scalar loss.
    """
    grouped = embeddings.float().view(-1, views, embeddings.shape[-1])
    if is_distributed():
        grouped = all_gather_with_grad(grouped)
        labels = all_gather_no_grad(labels) if labels is not None else None
    if miner is None:
        return loss_fn(grouped, labels)
    if labels is None:
        raise ValueError("a miner needs class labels; set loss.use_labels=true")
    rows = grouped.transpose(0, 1).reshape(-1, grouped.shape[-1])
    row_labels = labels.repeat(views)
    return loss_fn(rows, row_labels, indices_tuple=miner(rows.detach(), row_labels))
