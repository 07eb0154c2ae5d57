"""Process-group setup for ``torchrun``: NCCL on GPUs, gloo on the CPU.

``torchrun --nproc_per_node=N -m supcon train ...`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`distributed_session`
reads them, joins the group and leaves it again. Without them it does nothing, so the same
code runs single-process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from supcon.distributed import get_rank, get_world_size, is_distributed
from supcon.errors import SupconError


class DeviceError(SupconError, ValueError):
    """The requested device cannot be used here; the message says what to change."""


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    """``LOCAL_RANK`` from the environment (0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """The device this process trains on.

    Args:
        name: ``train.device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``. Under torchrun, ``"auto"`` / ``"cuda"`` mean
            ``cuda:LOCAL_RANK``.

    Raises:
        DeviceError: when CUDA is requested but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"train.device={name!r} but CUDA is not available; use train.device=cpu"
            )
        if name == "cuda":
            return torch.device("cuda", local_rank() if launched_by_torchrun() else 0)
    return torch.device(name)


@contextlib.contextmanager
def distributed_session(device: str = "auto", timeout_s: float = 1800) -> Iterator[None]:
    """Join the torchrun process group for the duration of the block (no-op single-process).

    Uses NCCL when this process trains on CUDA, gloo otherwise; pins this process to
    ``cuda:LOCAL_RANK``.

    Args:
        device: ``train.device`` of the run.
        timeout_s: Collective timeout.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every rank (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over ranks (``values`` itself when not distributed)."""
    if not is_distributed():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


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


__all__ = [
    "DeviceError",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "distributed_session",
    "get_rank",
    "get_world_size",
    "launched_by_torchrun",
    "local_rank",
    "mean_over_ranks",
    "resolve_device",
]
