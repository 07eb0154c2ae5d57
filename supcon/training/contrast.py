"""The loss of one training step: this rank's embeddings against the whole (global) batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from supcon.distributed import all_gather_variable_no_grad, is_distributed
from supcon.losses.rows import view_major


def batch_loss(
    loss_fn: Callable[..., Tensor],
    embeddings: Tensor,
    labels: Tensor | None,
    views: int,
    miner: nn.Module | None = None,
    refs: dict[str, Tensor] | None = None,
) -> Tensor:
    """SupCon loss of a step's embeddings; under DDP, over every rank's rows.

    Under DDP the loss must gather (``SupConLoss(gather_distributed=True)``): each rank
    contrasts its own anchors against the rows of all ranks, the value is the global mean on
    every rank, and after DDP's gradient averaging the parameter gradients equal the
    single-process gradient of the whole global batch. A miner then also works on the global
    batch: one built with ``gather_distributed=True`` (top-k) mines this rank's anchors
    against all rows itself; any other (PML miners) is run on the gathered rows, and the loss
    keeps the pairs anchored on this rank.

    Args:
        loss_fn: A :class:`supcon.SupConLoss`-like callable.
        embeddings: ``(b·V, D)`` this rank's embeddings, sample-major (the ``V`` views of
            sample 0 first).
        labels: ``(b,)`` class ids, or ``None`` (positives are the other views: NT-Xent).
        views: ``V``.
        miner: Optional miner; it sees ``(N, D)`` rows flattened view-major (row ``v·b + i``,
            the loss's own order) with repeated labels, and its pairs restrict the loss.
        refs: Extra candidates ``{"ref_embeddings", "ref_labels"}`` (a cross-batch memory's
            :meth:`~supcon.losses.CrossBatchMemory.as_refs`); not with a miner.

    Returns:
        The scalar loss.

    Raises:
        ValueError: under DDP with a loss that does not gather, or a miner without labels.
    """
    distributed = is_distributed()
    if distributed and not getattr(loss_fn, "gather_distributed", False):
        raise ValueError(
            "under DDP the loss must contrast the whole batch: build it with "
            "SupConLoss(..., gather_distributed=True)"
        )
    if embeddings.dtype in (torch.float16, torch.bfloat16):  # autocast output
        embeddings = embeddings.float()
    grouped = embeddings.view(-1, views, embeddings.shape[-1])
    if miner is None:
        return loss_fn(grouped, labels, **(refs or {}))
    if labels is None:
        raise ValueError("a miner needs class labels; set loss.use_labels=true")
    rows = view_major(grouped)
    row_labels = labels.repeat(views)
    if distributed and not getattr(miner, "gather_distributed", False):
        candidates = all_gather_variable_no_grad(rows.detach())
        pairs = miner(candidates, all_gather_variable_no_grad(row_labels))
    else:
        pairs = miner(rows.detach(), row_labels)
    return loss_fn(rows, row_labels, indices_tuple=pairs)
