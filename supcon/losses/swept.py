"""An autograd node for loss sums whose gradient comes out of the same sweep as the value.

The tiled and sparse paths walk the candidates once and accumulate both ``Σ ℓ`` and
``∂(Σ ℓ)/∂z``; backward then only scales that stored gradient. This saves recomputing the
similarities in backward at the price of one ``(M, D)`` gradient buffer, the size of ``z``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from supcon.losses.structure import AnchorCounts

Sweep = Callable[[Tensor, Any, bool], tuple[Tensor, Tensor | None, AnchorCounts]]


class SweptSum(torch.autograd.Function):
    """``Σ_a ℓ_a`` from ``sweep(z, plan, want_grad) -> (total, grad | None, counts)``.

    The counts are stored on ``plan.counts``. Differentiable once: backward with
    ``create_graph=True`` raises, pointing to the dense path.
    """

    @staticmethod
    def forward(ctx, z: Tensor, sweep: Sweep, plan: Any, want_grad: bool, name: str) -> Tensor:
        total, grad, plan.counts = sweep(z, plan, want_grad)
        ctx.save_for_backward(grad if grad is not None else z.new_zeros(()))
        ctx.has_grad = grad is not None
        ctx.name = name
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"supcon: the {ctx.name} loss is differentiable once; for higher-order "
                "gradients (create_graph=True) call the loss with tiled=False."
            )
        if not ctx.has_grad:
            raise RuntimeError(
                f"supcon: the {ctx.name} loss was computed without gradient tracking; call it "
                "with torch.enable_grad() and embeddings that require grad."
            )
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None, None


def swept_sum(z: Tensor, sweep: Sweep, plan: Any, name: str) -> tuple[Tensor, AnchorCounts]:
    """Run ``sweep`` through :class:`SweptSum`, with gradient only when ``z`` needs it.

    Args:
        z: ``(M, D)`` L2-normalised candidates.
        sweep: The path's sweep function.
        plan: Its parameters (a dataclass with a ``counts`` field, filled here).
        name: The path's name, for error messages.

    Returns:
        ``(total, counts)``: a 0-dim tensor in ``z.dtype`` tied to ``z``'s graph, and the
        anchor counts.
    """
    want_grad = torch.is_grad_enabled() and z.requires_grad
    total = SweptSum.apply(z, sweep, plan, want_grad, name)
    assert plan.counts is not None
    return total, plan.counts
