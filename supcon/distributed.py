"""Data-parallel helpers: the ``torchrun`` process group, rank / world, and the collectives.

* :func:`distributed_session` joins the group ``torchrun --nproc_per_node=N -m supcon train ...``
  describes (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on
  GPUs, gloo on the CPU.
* Gathers: :func:`all_gather_with_grad` (exact gradients), :func:`all_gather_no_grad` (labels,
  ids), and their ``_variable`` twins for ranks holding different numbers of rows.
* Reductions and broadcasts: :func:`all_reduce_sum`, :func:`mean_over_ranks`,
  :func:`broadcast_object`, :func:`broadcast_buffers`, :func:`barrier`.

Every helper is a no-op when ``torch.distributed`` is not initialised, so single-process code
calls them unconditionally. Which device a process uses is :mod:`supcon.devices`'s rule.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from supcon.devices import resolve_device


def is_distributed() -> bool:
    """True when a default process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of ranks, 1 when not distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed)."""
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def distributed_session(device: str = "auto", timeout_s: float = 1800) -> Iterator[None]:
    """Join the torchrun process group for the duration of the block (no-op single-process).

    Uses NCCL when this process trains on CUDA, gloo otherwise; pins this process to
    ``cuda:LOCAL_RANK``.

    Args:
        device: ``train.device`` of the run (see :func:`supcon.devices.resolve_device`).
        timeout_s: Collective timeout.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    target = resolve_device(device, option="train.device")
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        yield
    finally:
        dist.destroy_process_group()


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradients from every rank.

    Each rank's loss may depend on every rank's rows, so the gradient of the *sum* of the
    per-rank losses with respect to this rank's rows is the all-reduced (summed) gradient of the
    gathered tensor, sliced to this rank's rows.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank = dist.get_rank()
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping gradients exact.

    Args:
        tensor: ``(n, ...)``; every rank must pass the same shape.

    Returns:
        ``(world * n, ...)``, rank-major; ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 without gradient (labels, ids).

    Args:
        tensor: ``(n, ...)``; every rank must pass the same shape.

    Returns:
        ``(world * n, ...)``, rank-major; ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _sizes(rows: int, device: torch.device) -> list[int]:
    sizes = torch.tensor([rows], dtype=torch.long, device=device)
    parts = [torch.empty_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sizes)
    return [int(p.item()) for p in parts]


def gather_sizes(rows: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``rows``, in rank order (``[rows]`` when not distributed).

    Args:
        rows: This rank's count.
        device: Where the exchange tensor lives (CUDA for NCCL, CPU for gloo).

    Returns:
        One count per rank.
    """
    if not is_distributed():
        return [rows]
    return _sizes(rows, torch.device(device))


def _pad_rows(tensor: Tensor, rows: int) -> Tensor:
    if tensor.shape[0] == rows:
        return tensor
    pad = tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))
    return torch.cat([tensor, pad], dim=0)


def _unpad(gathered: Tensor, sizes: list[int], padded: int) -> Tensor:
    if all(s == padded for s in sizes):
        return gathered
    return torch.cat([gathered[r * padded : r * padded + s] for r, s in enumerate(sizes)], dim=0)


def all_gather_variable_with_grad(tensor: Tensor, sizes: list[int] | None = None) -> Tensor:
    """:func:`all_gather_with_grad` for ranks holding different numbers of rows.

    Rows are padded to the largest rank's count for the collective and the padding is dropped
    afterwards, so the result is the plain rank-major concatenation.

    Args:
        tensor: ``(n_r, ...)`` on rank ``r``; trailing shapes must agree across ranks.
        sizes: Every rank's ``n_r`` if already known (saves one collective).

    Returns:
        ``(sum_r n_r, ...)``; ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    sizes = sizes if sizes is not None else _sizes(tensor.shape[0], tensor.device)
    padded = max(sizes)
    gathered = _AllGatherWithGrad.apply(_pad_rows(tensor, padded))
    return _unpad(gathered, sizes, padded)


@torch.no_grad()
def all_gather_variable_no_grad(tensor: Tensor, sizes: list[int] | None = None) -> Tensor:
    """:func:`all_gather_no_grad` for ranks holding different numbers of rows.

    Args:
        tensor: ``(n_r, ...)`` on rank ``r``; trailing shapes and dtype must agree across ranks.
        sizes: Every rank's ``n_r`` if already known.

    Returns:
        ``(sum_r n_r, ...)``; ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    sizes = sizes if sizes is not None else _sizes(tensor.shape[0], tensor.device)
    padded = max(sizes)
    return _unpad(all_gather_no_grad(_pad_rows(tensor, padded)), sizes, padded)


@torch.no_grad()
def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over ranks (a new tensor; ``tensor`` itself when not distributed)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


@torch.no_grad()
def mean_over_ranks(values: Tensor) -> Tensor:
    """Element-wise mean over ranks (``values`` itself when not distributed)."""
    if not is_distributed():
        return values
    return all_reduce_sum(values) / get_world_size()


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every rank (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank (no-op when not distributed).

    Training keeps buffers per rank; evaluation and checkpoints use rank 0's, so every rank
    embeds with the same model.
    """
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def view_major_order(sizes: list[int], views: int) -> Tensor:
    """Where each row of the single-process batch sits in the rank-major gathered rows.

    Rank ``r`` holds ``sizes[r]`` samples and sends its rows view-major (row ``v·b_r + i``).
    One process holding all ``B = Σ b_r`` samples (rank 0's first) has row ``v·B + s_r + i``.

    Args:
        sizes: Samples per rank.
        views: Views per sample.

    Returns:
        ``(views·B,)`` indices ``order`` with ``single_process_rows = gathered[order]``.
    """
    order = []
    for view in range(views):
        offset = 0
        for size in sizes:
            start = offset * views + view * size
            order.append(torch.arange(start, start + size))
            offset += size
    return torch.cat(order)
