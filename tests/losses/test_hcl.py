"""HCL hard-negative reweighting (Robinson et al. 2021) against the float64 loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import SupConLoss, supcon_loss
from tests.reference import flatten_views, pair_masks_from_labels, reference_hcl, reference_supcon


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.25, 1.0, 3.0])
@pytest.mark.parametrize("tiled", [False, True])
def test_hcl_matches_reference_with_labels(beta: float, tiled: bool) -> None:
    emb = _rand(20, 8, seed=1)
    labels = torch.arange(20) % 4
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected = reference_hcl(emb.numpy(), pos, keep, 0.2, beta)
    got = supcon_loss(emb, labels, temperature=0.2, hcl_beta=beta, tiled=tiled, block_size=6)
    assert got.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("tiled", [False, True])
def test_hcl_matches_reference_on_views(tiled: bool) -> None:
    emb = _rand(9, 2, 8, seed=2)
    flat = flatten_views(emb.numpy())
    pos, keep = pair_masks_from_labels(np.tile(np.arange(9), 2))
    expected = reference_hcl(flat, pos, keep, 0.5, 1.0)
    got = SupConLoss(0.5, hcl_beta=1.0, tiled=tiled)(emb)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_beta_zero_is_plain_supcon() -> None:
    emb = _rand(16, 8, seed=3)
    labels = torch.arange(16) % 3
    pos, keep = pair_masks_from_labels(labels.numpy())
    plain, _ = reference_supcon(emb.numpy(), pos, keep, 0.1)
    assert reference_hcl(emb.numpy(), pos, keep, 0.1, 0.0) == pytest.approx(plain, rel=1e-12)
    assert supcon_loss(emb, labels, hcl_beta=0.0).item() == pytest.approx(plain, rel=1e-10)


def test_larger_beta_weighs_hard_negatives_more() -> None:
    emb = _rand(24, 8, seed=4)
    labels = torch.arange(24) % 4
    values = [supcon_loss(emb, labels, hcl_beta=b).item() for b in (0.0, 0.5, 2.0)]
    # Upweighting the most similar negatives raises the estimated negative mass.
    assert values[0] < values[1] < values[2]


def test_hcl_gradient_passes_gradcheck_on_both_paths() -> None:
    emb = _rand(8, 2, 4, seed=5).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for tiled in (False, True):
        assert torch.autograd.gradcheck(
            lambda e, t=tiled: supcon_loss(e, labels, temperature=0.5, hcl_beta=1.5, tiled=t),
            (emb,),
            fast_mode=True,
        )


@pytest.mark.parametrize("beta", [-0.5, float("inf"), float("nan"), "x"])
def test_bad_beta_is_rejected(beta) -> None:
    with pytest.raises(ValueError, match="hcl_beta"):
        SupConLoss(hcl_beta=beta)
    with pytest.raises(ValueError, match="hcl_beta"):
        supcon_loss(_rand(4, 3), torch.arange(4) % 2, hcl_beta=beta)


def _denominator_rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (3, 6): row 0 has positives and negatives, row 1 positives only, row 2 both."""
    logits = _rand(3, 6, seed=7) * 3
    positive = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()
    negative = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]]).bool()
    return logits, positive, negative


@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_hcl_denominator_by_explicit_sums(beta: float) -> None:
    """log D = log(Σ_P e^l + |N| Σ_N w e^l), w ∝ e^(β l); beta = 0 and no negatives included."""
    from supcon.losses.hcl import hcl_block_gradient, hcl_log_denominator

    logits, positive, negative = _denominator_rows()
    expected = []
    for row, pos, neg in zip(logits.tolist(), positive.tolist(), negative.tolist(), strict=True):
        total = sum(np.exp(v) for v, p in zip(row, pos, strict=True) if p)
        negs = [v for v, n in zip(row, neg, strict=True) if n]
        if negs:
            weights = np.exp(beta * np.array(negs))
            total += len(negs) * float(np.sum(weights / weights.sum() * np.exp(negs)))
        expected.append(np.log(total))
    got = hcl_log_denominator(logits, positive, negative, beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    masked = torch.where(
        positive | negative, logits, torch.tensor(float("-inf"), dtype=logits.dtype)
    )
    log_d, grad = hcl_block_gradient(masked, positive, negative, beta)
    np.testing.assert_allclose(log_d.numpy(), expected, rtol=1e-12)
    autograd_logits = logits.clone().requires_grad_()
    hcl_log_denominator(autograd_logits, positive, negative, beta).sum().backward()
    np.testing.assert_allclose(grad.numpy(), autograd_logits.grad.numpy(), atol=1e-12)


def test_safe_logsumexp_is_per_row_and_finite_on_empty_rows() -> None:
    from supcon.losses.hcl import safe_logsumexp

    x = torch.tensor(
        [[-1000.0, -1001.0, float("-inf")], [1000.0, 999.0, 998.0], [float("-inf")] * 3],
        dtype=torch.float64,
    )
    got = safe_logsumexp(x)
    np.testing.assert_allclose(got[:2].numpy(), torch.logsumexp(x[:2], dim=1).numpy(), rtol=1e-15)
    assert got[2].item() == np.log(np.finfo(np.float64).tiny)  # no finite entry
    np.testing.assert_allclose(safe_logsumexp(x[:2].T, dim=0).numpy(), got[:2].numpy())
