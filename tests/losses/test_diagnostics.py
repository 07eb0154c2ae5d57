"""Loss bounds (derived in supcon.losses.diagnostics) and batch diagnostics vs references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from supcon import batch_diagnostics, supcon_loss
from supcon.losses import loss_bounds
from tests.reference import (
    anchor_term,
    brute_force_upper_bound,
    pair_masks_from_labels,
    reference_alignment_uniformity,
    term_from_logits,
)

CASES = [(1, 0), (1, 1), (1, 5), (2, 0), (3, 0), (3, 1), (4, 2), (2, 6), (5, 1)]


@pytest.mark.parametrize(("num_pos", "num_neg"), CASES)
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0, 5.0])
def test_upper_bound_equals_brute_force_over_all_box_vertices(num_pos, num_neg, temperature):
    _, upper = loss_bounds(torch.tensor([num_pos]), torch.tensor([num_neg]), temperature)
    expected = brute_force_upper_bound(num_pos, num_neg, temperature)
    assert upper.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("num_pos", "num_neg"), CASES)
@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_lower_bound_is_attained_and_never_beaten(num_pos, num_neg, temperature):
    lower, upper = loss_bounds(torch.tensor([num_pos]), torch.tensor([num_neg]), temperature)
    # Attained: positives on the anchor, negatives antipodal.
    e = np.eye(3)[0]
    attained = anchor_term(e, [e] * num_pos, [-e] * num_neg, temperature)
    assert lower.item() == pytest.approx(attained, rel=1e-10, abs=1e-12)
    # Random cosines in [-1, 1] stay inside the bounds.
    rng = np.random.default_rng(num_pos * 10 + num_neg)
    for _ in range(200):
        lp = list(rng.uniform(-1, 1, num_pos) / temperature)
        ln = list(rng.uniform(-1, 1, num_neg) / temperature)
        value = term_from_logits(lp, ln)
        assert lower.item() - 1e-9 <= value <= upper.item() + 1e-9


def test_simclr_bounds_are_agren_s_formula() -> None:
    # NT-Xent: one positive, 2N - 2 negatives; upper = log(1 + (2N-2) e^{2/τ}) (Ågren 2022).
    n, tau = 64, 0.2
    lower, upper = loss_bounds(torch.tensor([1]), torch.tensor([2 * n - 2]), tau)
    assert upper.item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(2 / tau)))
    assert lower.item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-2 / tau)))


def test_bounds_reject_anchors_without_positives() -> None:
    with pytest.raises(ValueError, match="num_positives"):
        loss_bounds(torch.tensor([0]), torch.tensor([3]), 0.1)


def test_diagnostics_match_loss_and_references() -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(30) % 4
    diag = batch_diagnostics(emb, labels, temperature=0.2, block_size=7)
    assert diag.loss == pytest.approx(supcon_loss(emb, labels, temperature=0.2).item(), rel=1e-5)
    pos, _ = pair_masks_from_labels(labels.numpy())
    alignment, uniformity, mean_sim = reference_alignment_uniformity(emb.numpy(), pos)
    assert diag.alignment == pytest.approx(alignment, rel=1e-5)
    assert diag.uniformity == pytest.approx(uniformity, rel=1e-5)
    assert diag.mean_similarity == pytest.approx(mean_sim, abs=1e-6)
    # Per anchor: 7 or 6 positives out of 29 others.
    num_pos = torch.tensor([int(pos[i].sum()) for i in range(30)])
    lower, upper = loss_bounds(num_pos, 29 - num_pos, 0.2)
    assert diag.loss_lower_bound == pytest.approx(lower.mean().item(), rel=1e-6)
    assert diag.loss_upper_bound == pytest.approx(upper.mean().item(), rel=1e-6)
    assert diag.loss_lower_bound < diag.loss < diag.loss_upper_bound
    assert 0.0 < diag.loss_position < 1.0
    assert not diag.collapsed
    assert set(diag.as_dict()) >= {"alignment", "uniformity", "collapsed", "loss_position"}


def test_collapse_alarm_and_perfect_separation() -> None:
    gen = torch.Generator().manual_seed(1)
    collapsed = torch.ones(20, 8) + 1e-3 * torch.randn(20, 8, generator=gen)
    diag = batch_diagnostics(collapsed, torch.arange(20) % 4)
    assert diag.collapsed and diag.mean_similarity > 0.99
    assert diag.effective_rank < 1.5
    # Two antipodal classes: the loss sits at its lower bound.
    e = torch.eye(4)[0]
    separated = torch.stack([e] * 5 + [-e] * 5).double()
    diag = batch_diagnostics(separated, torch.tensor([0] * 5 + [1] * 5), temperature=0.1)
    assert diag.loss == pytest.approx(diag.loss_lower_bound, rel=1e-9)
    assert diag.loss_position == pytest.approx(0.0, abs=1e-9)
    assert diag.alignment == pytest.approx(0.0, abs=1e-12)
    assert not diag.collapsed


def test_diagnostics_on_views_and_bad_threshold() -> None:
    emb = torch.randn(16, 2, 8, generator=torch.Generator().manual_seed(2))
    diag = batch_diagnostics(emb, temperature=0.5)
    assert diag.loss == pytest.approx(supcon_loss(emb, temperature=0.5).item(), rel=1e-5)
    assert diag.num_anchors_in_mean == 32
    with pytest.raises(ValueError, match="collapse_threshold"):
        batch_diagnostics(emb, collapse_threshold=1.5)
