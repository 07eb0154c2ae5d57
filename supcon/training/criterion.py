"""The loss of one training step for any registered loss, under DDP and GradCache alike.

``supcon`` goes through :func:`supcon.training.contrast.batch_loss` (each rank contrasts its
anchors against the gathered batch). A PML loss is instead computed on the whole gathered
batch on every rank, in the row order one process would see: its value is the same on every
rank, the all-gather's backward sums ``∂L/∂e`` over ranks, and DDP's averaging then gives
every model parameter the single-process gradient of the whole batch. The loss's own
parameters (proxies) get that gradient on every rank directly;
:func:`average_loss_gradients` keeps the ranks' copies identical to the bit.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from supcon.distributed import (
    all_gather_variable_no_grad,
    all_gather_variable_with_grad,
    gather_sizes,
    get_world_size,
    is_distributed,
    view_major_order,
)
from supcon.losses import CrossBatchMemory, SupConLoss
from supcon.losses.rows import view_major
from supcon.training.contrast import batch_loss


def pml_batch_loss(
    loss_fn: nn.Module,
    embeddings: Tensor,
    labels: Tensor | None,
    views: int,
    miner: nn.Module | None = None,
    use_memory: bool = True,
) -> Tensor:
    """A PML loss of a step's embeddings; under DDP, of the whole gathered batch.

    Args:
        loss_fn: A PML loss, called as ``loss_fn(rows, labels, indices_tuple=pairs)``.
        embeddings: ``(b·V, D)`` this rank's embeddings, sample-major.
        labels: ``(b,)`` class ids, or ``None``: each sample is its own class, so the other
            views of an image are its positives (self-supervised, as PML's
            ``SelfSupervisedLoss``).
        views: ``V``.
        miner: Optional miner, run on the detached rows with repeated labels; its pairs feed
            the loss as ``indices_tuple``.
        use_memory: With ``False``, a loss wrapped in PML's cross-batch memory is called
            without it (nothing is enqueued): before ``loss.memory_start_epoch``.

    Returns:
        The scalar loss (the same value on every rank).
    """
    if embeddings.dtype in (torch.float16, torch.bfloat16):  # autocast output
        embeddings = embeddings.float()
    dim = embeddings.shape[-1]
    grouped = embeddings.view(-1, views, dim)
    rows = view_major(grouped)  # as the SupCon path
    sizes = [grouped.shape[0]]
    if is_distributed():
        sizes = gather_sizes(grouped.shape[0], embeddings.device)
        gathered = all_gather_variable_with_grad(rows, [s * views for s in sizes])
        rows = gathered[view_major_order(sizes, views).to(rows.device)]
        if labels is not None:
            labels = all_gather_variable_no_grad(labels, sizes)
    if labels is None:
        labels = torch.arange(sum(sizes), device=rows.device)
    row_labels = labels.repeat(views)
    pairs = miner(rows.detach(), row_labels) if miner is not None else None
    if not use_memory:
        from pytorch_metric_learning.losses import CrossBatchMemory as PMLCrossBatchMemory

        if isinstance(loss_fn, PMLCrossBatchMemory):
            loss_fn = loss_fn.loss
    return loss_fn(rows, row_labels, indices_tuple=pairs)


def step_loss(
    loss_fn: nn.Module,
    embeddings: Tensor,
    labels: Tensor | None,
    views: int,
    miner: nn.Module | None = None,
    memory: CrossBatchMemory | None = None,
    use_memory: bool = True,
) -> Tensor:
    """The loss of one step for ``supcon`` or a PML loss.

    Args:
        loss_fn: From :func:`supcon.builders.build_loss`.
        embeddings: ``(b·V, D)`` this rank's embeddings, sample-major.
        labels: ``(b,)`` class ids or ``None``.
        views: ``V``.
        miner: Optional miner (see :func:`batch_loss`).
        memory: Optional cross-batch memory whose rows join the candidates (``supcon``; a
            PML loss carries PML's memory wrapper itself).
        use_memory: Whether the memory (either kind) takes part in this step.

    Returns:
        The scalar loss.
    """
    if isinstance(loss_fn, SupConLoss):
        active = use_memory and memory is not None and len(memory) > 0
        refs = memory.as_refs() if active else None
        return batch_loss(loss_fn, embeddings, labels, views, miner, refs=refs)
    if memory is not None:
        raise ValueError("a cross-batch memory works with loss.name=supcon only")
    return pml_batch_loss(loss_fn, embeddings, labels, views, miner, use_memory)


@torch.no_grad()
def average_loss_gradients(loss_fn: nn.Module) -> None:
    """Average the loss parameters' gradients over ranks (no-op when not distributed).

    Every rank computes them from the same gathered batch, so this only removes rounding
    differences a device's non-deterministic kernels could introduce.
    """
    if not is_distributed():
        return
    for param in loss_fn.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= get_world_size()
