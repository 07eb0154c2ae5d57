"""Cross-batch memory: a label-aware FIFO queue of past embeddings.

A queue of embeddings from earlier batches enlarges every anchor's set of candidates without
enlarging the batch: MoCo (He et al., CVPR 2020) uses one as extra negatives, and XBM (Wang et
al., CVPR 2020) shows that with labels the stored rows also serve as extra positives once the
embedding drifts slowly. :class:`CrossBatchMemory` stores L2-normalised, detached rows with
their integer labels and hands them to the loss as ``ref_embeddings`` / ``ref_labels``.

Order of operations in a step — contrast first, enqueue after::

    loss = loss_fn(z, labels, **memory.as_refs())   # the current batch against past batches
    loss.backward(); optimizer.step()
    memory.enqueue(z, labels)                       # then remember the current batch

Enqueueing first would put a detached copy of every anchor among its own candidates (a
positive with similarity 1 that carries no gradient).

Rows enqueued without labels get unique ids far below any class id, so they are pure
negatives (MoCo-style) for label-aware and view-grouped batches alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from supcon.distributed import (
    all_gather_variable_no_grad,
    gather_sizes,
    is_distributed,
    view_major_order,
)
from supcon.losses.functional import l2_normalize
from supcon.losses.inputs import as_long_labels, check_embeddings
from supcon.losses.rows import view_major

#: Ids of unlabelled rows start here and count up (never equal to a real class id).
UNLABELLED_ID_BASE = -(1 << 62)

EnqueueFilter = Callable[[Tensor, Tensor], Tensor]


class CrossBatchMemory(nn.Module):
    """Fixed-size FIFO queue of ``(embedding, label)`` rows for use as loss references.

    The queue lives in buffers, so it follows ``.to(device)`` and is saved in ``state_dict``
    (checkpoint it with the model to resume exactly).

    Args:
        size: Maximum rows held; the oldest rows are overwritten first.
        dim: Embedding dimension ``D``.
        enqueue_filter: Optional ``f(embeddings (n, D), labels (n,)) -> (n,) bool`` choosing
            which rows of a batch to store (e.g. drop rows of rare classes). It runs on each
            rank's own rows before they are gathered, on normalised, detached embeddings.
        gather_distributed: Under DDP, gather every rank's rows on enqueue so all ranks hold
            the same queue: for ``(B, V, D)`` batches (without a filter) exactly the queue
            one process would hold for the whole batch, otherwise rank-major. Ignored when
            not distributed.
        dtype: Storage dtype (float32 by default; the loss computes in float32 at least).

    Example:
        >>> memory = CrossBatchMemory(size=8192, dim=128)
        >>> loss = loss_fn(z, y, **memory.as_refs())
        >>> memory.enqueue(z, y)
    """

    def __init__(
        self,
        size: int,
        dim: int,
        *,
        enqueue_filter: EnqueueFilter | None = None,
        gather_distributed: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        for name, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if enqueue_filter is not None and not callable(enqueue_filter):
            raise ValueError(
                "enqueue_filter must be a callable (embeddings, labels) -> bool mask, got "
                f"{type(enqueue_filter).__name__}."
            )
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}.")
        self.size = size
        self.dim = dim
        self.enqueue_filter = enqueue_filter
        self.gather_distributed = gather_distributed
        self.register_buffer("queue_embeddings", torch.zeros(size, dim, dtype=dtype))
        self.register_buffer("queue_labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("unlabelled_seen", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @property
    def embeddings(self) -> Tensor:
        """``(len(self), D)`` stored rows (a view; slot order, not age order)."""
        return self.queue_embeddings[: len(self)]

    @property
    def labels(self) -> Tensor:
        """``(len(self),)`` labels of :attr:`embeddings`."""
        return self.queue_labels[: len(self)]

    def as_refs(self) -> dict[str, Tensor]:
        """``{"ref_embeddings": ..., "ref_labels": ...}`` to splat into the loss call.

        An empty queue gives ``(0, D)`` references, which the loss accepts and ignores.
        """
        return {"ref_embeddings": self.embeddings, "ref_labels": self.labels}

    def reset(self) -> None:
        """Empty the queue."""
        self.pointer.zero_()
        self.filled.zero_()
        self.unlabelled_seen.zero_()

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor | None = None) -> int:
        """Store a batch (detached, L2-normalised), overwriting the oldest rows when full.

        Args:
            embeddings: ``(N, D)`` or ``(B, V, D)`` (flattened view-major like the loss).
            labels: ``(N,)`` / ``(B,)`` integer class ids, or ``None`` for rows that should act
                only as negatives.

        Returns:
            Number of rows added to the queue (summed over ranks under DDP).

        Raises:
            ValueError: on malformed input, naming the argument.
        """
        check_embeddings(embeddings, "embeddings")
        if embeddings.dim() not in (2, 3) or embeddings.shape[-1] != self.dim:
            raise ValueError(
                f"embeddings must be (N, {self.dim}) or (B, V, {self.dim}) for this memory, got "
                f"shape {tuple(embeddings.shape)}."
            )
        num_views = embeddings.shape[1] if embeddings.dim() == 3 else 1
        flat = embeddings.detach()
        if embeddings.dim() == 3:
            flat = view_major(flat)
        flat = l2_normalize(flat.to(torch.float32))
        device = self.queue_embeddings.device
        flat = flat.to(device)
        if labels is not None:
            label_t = as_long_labels(labels, "labels", device)
            if label_t.dim() != 1 or label_t.shape[0] != embeddings.shape[0]:
                raise ValueError(
                    f"labels must be (N,) integer class ids with N={embeddings.shape[0]} (one "
                    f"per {'sample' if num_views > 1 else 'row'}), got shape "
                    f"{tuple(label_t.shape)}; multi-hot labels cannot be queued."
                )
            label_t = label_t.repeat(num_views)
            if self.enqueue_filter is not None:
                keep = torch.as_tensor(self.enqueue_filter(flat, label_t), device=device)
                if keep.dtype != torch.bool or keep.shape != (flat.shape[0],):
                    raise ValueError(
                        f"enqueue_filter must return a ({flat.shape[0]},) bool mask, got "
                        f"{keep.dtype} of shape {tuple(keep.shape)}."
                    )
                flat, label_t = flat[keep], label_t[keep]
        else:
            label_t = None
            if self.enqueue_filter is not None:
                raise ValueError(
                    "enqueue_filter needs labels; pass labels to enqueue() or drop the filter."
                )
        if self.gather_distributed and is_distributed():
            sizes = gather_sizes(flat.shape[0], device)
            flat = all_gather_variable_no_grad(flat, sizes)
            if label_t is not None:
                label_t = all_gather_variable_no_grad(label_t, sizes)
            if num_views > 1 and self.enqueue_filter is None:  # the order one process sees
                order = view_major_order([s // num_views for s in sizes], num_views)
                flat = flat[order.to(device)]
                label_t = None if label_t is None else label_t[order.to(device)]
        if label_t is None:
            start = int(self.unlabelled_seen)
            label_t = UNLABELLED_ID_BASE + start + torch.arange(flat.shape[0], device=device)
            self.unlabelled_seen += flat.shape[0]
        self._write(flat.to(self.queue_embeddings.dtype), label_t)
        return int(flat.shape[0])

    def _write(self, rows: Tensor, labels: Tensor) -> None:
        if rows.shape[0] > self.size:
            rows, labels = rows[-self.size :], labels[-self.size :]
        count = rows.shape[0]
        if count == 0:
            return
        slots = (int(self.pointer) + torch.arange(count, device=rows.device)) % self.size
        self.queue_embeddings[slots] = rows
        self.queue_labels[slots] = labels
        self.pointer.copy_((self.pointer + count) % self.size)
        self.filled.copy_(torch.clamp(self.filled + count, max=self.size))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, filled={len(self)}"
