"""B = 65,536 (a 16 GiB similarity matrix in float32): the tiled path trains on it anyway."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon.losses import loss_bounds, supcon_loss, supcon_loss_with_stats

pytestmark = pytest.mark.slow

BATCH, DIM = 65_536, 128


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, DIM, generator=gen)
    labels = torch.randint(0, BATCH // 8, (BATCH,), generator=gen)
    return x, labels


def test_b65536_forward_backward_completes_with_finite_gradients() -> None:
    x, labels = _batch()
    leaf = x.requires_grad_()
    loss, stats = supcon_loss_with_stats(leaf, labels, temperature=0.1)
    assert stats.tiled and stats.num_anchors == BATCH
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    # Inside the derived bounds (mean over counted anchors).
    counts = torch.bincount(labels)[labels] - 1
    counted = counts > 0
    lower, upper = loss_bounds(counts[counted], BATCH - 1 - counts[counted], 0.1)
    assert lower.mean().item() < loss.item() < upper.mean().item()
    # The loss is scale-free per row, so each row's gradient is orthogonal to the row.
    radial = (leaf.grad * x).sum(dim=1) / (leaf.grad.norm(dim=1) * x.norm(dim=1) + 1e-30)
    assert radial.abs().max().item() < 1e-3


def test_b65536_candidates_match_float64_for_a_few_anchors() -> None:
    # 64 anchors against all 65,536 rows (the rest as references): tiled float32 vs numpy float64.
    x, labels = _batch()
    anchors, refs = x[:64], x[64:]
    got = supcon_loss(anchors, labels[:64], ref_embeddings=refs, ref_labels=labels[64:], tiled=True)
    z = x.double().numpy()
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = labels.numpy()
    terms = []
    for i in range(64):
        logits = z @ z[i] / 0.1
        others = np.arange(BATCH) != i
        pos = others & (y == y[i])
        if not pos.any():
            continue
        top = logits[others].max()
        lse = top + np.log(np.exp(logits[others] - top).sum())
        terms.append(lse - logits[pos].mean())
    assert got.item() == pytest.approx(float(np.mean(terms)), rel=1e-5)
