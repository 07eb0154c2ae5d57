"""Cached-embedding accumulation (GradCache; Gao et al., RepL4NLP 2021) for exact large batches.

Plain gradient accumulation is wrong for a contrastive loss: each micro-batch would contrast
only against its own rows. Instead:

1. embed every micro-batch without a graph and cache the embeddings;
2. compute the loss on the whole cached batch and backpropagate it into the cache, which
   gives ``∂L/∂e`` for every embedding ``e``;
3. re-run each micro-batch with a graph and backpropagate ``∂L/∂e`` through it.

Step 3 accumulates ``Σ_i (∂L/∂e_i) · ∂e_i/∂θ = ∂L/∂θ``, the full-batch gradient, while only
one micro-batch's activations are alive at a time. The re-run must compute exactly what the
first pass did, so each micro-batch's RNG state (dropout, stochastic depth) is saved before the
first pass and restored before the re-run, and buffers updated by the first pass (BatchNorm
running statistics) are restored after the re-runs so they move once per micro-batch.

Layers that mix rows of a batch (BatchNorm in train mode) normalise each micro-batch on its own,
as they would on a device that holds one micro-batch; everything else gives the gradient of
the whole batch computed at once, to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

ContextFactory = Callable[[], contextlib.AbstractContextManager]


def _full_precision(embeddings: Tensor) -> Tensor:
    """Autocast outputs (fp16 / bf16) as float32; float32 / float64 unchanged."""
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        return embeddings.float()
    return embeddings


class _RngState:
    """The CPU generator's state and, for a CUDA device, that device's generator state."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def cached_backward(
    model: nn.Module | Callable[[Tensor], Tensor],
    chunks: Sequence[Tensor],
    loss_fn: Callable[[Tensor], Tensor],
    *,
    autocast: ContextFactory = contextlib.nullcontext,
    scale: Callable[[Tensor], Tensor] | None = None,
    no_sync: ContextFactory | None = None,
    buffers: nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """Backpropagate ``loss_fn`` of the concatenated embeddings of ``chunks``, one chunk at a time.

    Gradients are accumulated into the parameters' ``.grad`` exactly as
    ``loss_fn(torch.cat([model(c) for c in chunks])).backward()`` would (with ``scale``
    applied to the loss), without keeping more than one chunk's activations.

    Args:
        model: Maps a chunk ``(b_i, ...)`` to embeddings ``(b_i, D)``.
        chunks: The micro-batches, in batch order.
        loss_fn: Maps the concatenated embeddings ``(Σ b_i, D)`` (a leaf that requires grad;
            autocast outputs are cast to float32) to a scalar loss. It may raise to abort the
            step before any parameter gradient is touched (e.g. on a non-finite loss).
        autocast: Context for the forward passes (mixed precision).
        scale: Applied to the loss before its backward (an fp16 ``GradScaler.scale``).
        no_sync: Context that suppresses DDP's gradient all-reduce; used for every re-run but
            the last, so gradients are reduced once per step.
        buffers: The module whose buffers (BatchNorm statistics) must move once per chunk;
            defaults to ``model`` when it is a module.

    Returns:
        ``(loss, embeddings)``, both detached: the scalar loss and the ``(Σ b_i, D)``
        embeddings.
    """
    if not chunks:
        raise ValueError("cached_backward needs at least one chunk")
    device = chunks[0].device
    stateful = buffers if buffers is not None else model if isinstance(model, nn.Module) else None

    # 1. Embed without a graph, remembering the RNG state each chunk started from.
    rng_states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            rng_states.append(_RngState(device))
            with autocast():
                cached.append(_full_precision(model(chunk)))
    saved_buffers = [b.detach().clone() for b in stateful.buffers()] if stateful is not None else []

    # 2. Loss on the whole batch, backpropagated into the cache only.
    embeddings = torch.cat(cached).requires_grad_(True)
    loss = loss_fn(embeddings)
    (scale(loss) if scale is not None else loss).backward()
    resume_from = _RngState(device)  # where the RNG stream continues after this step
    grads = embeddings.grad if embeddings.grad is not None else torch.zeros_like(embeddings)
    chunk_grads = grads.split([c.shape[0] for c in cached])

    # 3. Replay each chunk with a graph and push its slice of ∂L/∂e through it.
    for i, (chunk, grad, rng) in enumerate(zip(chunks, chunk_grads, rng_states, strict=True)):
        last = i == len(chunks) - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        rng.restore()
        with sync:
            with autocast():
                replayed = model(chunk)
            torch.autograd.backward(_full_precision(replayed), grad_tensors=grad)

    if stateful is not None:
        with torch.no_grad():
            for buffer, saved in zip(stateful.buffers(), saved_buffers, strict=True):
                buffer.copy_(saved)
    resume_from.restore()
    return loss.detach(), embeddings.detach()
