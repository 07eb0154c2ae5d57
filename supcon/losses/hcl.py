"""Hard-negative reweighting of the SupCon denominator (HCL; Robinson et al., ICLR 2021).

HCL replaces the plain sum over negatives by an importance-weighted estimate that concentrates
on hard negatives. For anchor ``i`` with logits ``l_ij = s_ij / τ``, positives ``P(i)`` and
negatives ``N(i)`` (the denominator set minus the positives), with concentration ``β ≥ 0``::

    w_in  = exp(β l_in) / Σ_{n' ∈ N(i)} exp(β l_in')          (importance weights, sum to 1)
    Ng_i  = |N(i)| · Σ_{n ∈ N(i)} w_in exp(l_in)
    ℓ_i   = log( Σ_{p ∈ P(i)} exp(l_ip) + Ng_i ) − mean_{p ∈ P(i)} l_ip

This is the HCL estimator with the paper's debiasing prior ``τ⁺ = 0`` (labels already remove
false negatives) and the weight ``exp(β · s/τ)`` used by the authors' code. ``β = 0`` gives
uniform weights, so ``Ng_i = Σ_n exp(l_in)`` and ℓ_i is plain SupCon. The weights are *not*
detached: the gradient is that of the estimator, as in the paper's implementation.

In log space (stable for any τ)::

    log Ng_i = log|N(i)| + lse_n((1 + β) l_in) − lse_n(β l_in)
    log D_i  = logaddexp(lse_p(l_ip), log Ng_i)

and the derivative of ``log D_i`` with respect to the logits is::

    ∂/∂l_ip = exp(l_ip − log D_i)                                               (p ∈ P(i))
    ∂/∂l_in = exp(log Ng_i − log D_i) · [(1 + β) softmax_n((1 + β) l)_in − β softmax_n(β l)_in]
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_beta(beta: float) -> float:
    """Return the HCL concentration ``beta`` as a float, or raise if it is not finite and ≥ 0."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"hcl_beta must be a number >= 0, got {beta!r}.") from None
    if not (value >= 0.0 and value != float("inf")):
        raise ValueError(
            f"hcl_beta must be a finite number >= 0 (0 disables hard-negative reweighting; "
            f"Robinson et al. use 0.5-1), got {beta!r}."
        )
    return value


def safe_logsumexp(x: Tensor, dim: int = 1) -> Tensor:
    """``logsumexp`` over ``dim`` that stays finite (and NaN-free in backward) on all -inf rows.

    Args:
        x: Values with ``-inf`` at masked entries.
        dim: Reduced dimension.

    Returns:
        The log-sum-exp; a row with no finite entry gives ``log(tiny)`` instead of ``-inf``.
    """
    peak = x.detach().amax(dim=dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.exp(x - peak).sum(dim=dim, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    return (peak + torch.log(total.clamp(min=tiny))).squeeze(dim)


def hcl_log_denominator(logits: Tensor, positive: Tensor, negative: Tensor, beta: float) -> Tensor:
    """``log D_i`` of the HCL-reweighted denominator (differentiable; the dense path).

    Args:
        logits: ``(n, M)`` logits ``s / τ``.
        positive: ``(n, M)`` boolean positives.
        negative: ``(n, M)`` boolean negatives (denominator minus positives, self excluded).
        beta: Concentration ``β ≥ 0``.

    Returns:
        ``(n,)`` log-denominators.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    lse_pos = safe_logsumexp(torch.where(positive, logits, neg_inf))
    log_ng = _log_weighted_negatives(torch.where(negative, logits, neg_inf), negative, beta)[0]
    return torch.logaddexp(lse_pos, log_ng)


def _log_weighted_negatives(
    neg_logits: Tensor, negative: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(log Ng, lse((1+β) l), lse(β l))`` over the negatives (``-inf`` elsewhere)."""
    num_neg = negative.sum(dim=1)
    log_num_neg = torch.log(num_neg.clamp(min=1).to(neg_logits.dtype))
    sharp = safe_logsumexp((1.0 + beta) * neg_logits)
    # β = 0: uniform weights, lse(0 · l) = log|N| (and 0 · -inf would be NaN).
    weights = safe_logsumexp(beta * neg_logits) if beta > 0 else log_num_neg
    log_ng = log_num_neg + sharp - weights
    log_ng = torch.where(num_neg > 0, log_ng, torch.full_like(log_ng, float("-inf")))
    return log_ng, sharp, weights


@torch.no_grad()
def hcl_block_gradient(
    logits: Tensor, positive: Tensor, negative: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """``log D_i`` and ``∂ log D_i / ∂ l_ij`` for one block of anchors (the tiled path).

    Args:
        logits: ``(n, M)`` logits with ``-inf`` outside the denominator (self included).
        positive: ``(n, M)`` boolean positives.
        negative: ``(n, M)`` boolean negatives.
        beta: Concentration ``β ≥ 0``.

    Returns:
        ``(log_denominator (n,), d_log_denominator (n, M))``.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    pos_logits = torch.where(positive, logits, neg_inf)
    neg_logits = torch.where(negative, logits, neg_inf)
    lse_pos = safe_logsumexp(pos_logits)
    log_ng, sharp, weights = _log_weighted_negatives(neg_logits, negative, beta)
    log_d = torch.logaddexp(lse_pos, log_ng)
    grad = torch.exp(pos_logits - log_d[:, None])
    neg_share = torch.exp(log_ng - log_d)[:, None]
    neg_grad = (1.0 + beta) * torch.exp((1.0 + beta) * neg_logits - sharp[:, None])
    if beta > 0:
        neg_grad -= beta * torch.exp(beta * neg_logits - weights[:, None])
    grad += torch.where(negative, neg_share * neg_grad, torch.zeros_like(grad))
    return log_d, grad
