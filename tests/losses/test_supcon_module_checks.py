"""``SupConLoss`` (the module) against float64 loop references: each option reaches the loss.

Every test builds the module with one option and checks the value (or the validation message,
``repr`` or ``last_stats``) it produces, so a constructor or ``forward`` that drops or replaces
the option fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import SupConLoss
from tests.reference import (
    pair_masks_from_indices,
    pair_masks_from_labels,
    reference_hcl,
    reference_supcon,
)


def _rand(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_default_temperature_is_0_1() -> None:
    emb, labels = _rand(12, 6, 1), torch.arange(12) % 3
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected, _ = reference_supcon(emb.numpy(), pos, keep, 0.1)
    loss_fn = SupConLoss()
    assert loss_fn(emb, labels).item() == pytest.approx(expected, rel=1e-10)
    assert loss_fn.temperature == 0.1


def test_base_temperature_multiplies_by_tau_over_base() -> None:
    emb, labels = _rand(12, 6, 2), torch.arange(12) % 4
    pos, keep = pair_masks_from_labels(labels.numpy())
    plain, _ = reference_supcon(emb.numpy(), pos, keep, 0.2)
    loss_fn = SupConLoss(0.2, base_temperature=0.07)
    assert loss_fn.base_temperature == 0.07
    assert loss_fn(emb, labels).item() == pytest.approx(plain * 0.2 / 0.07, rel=1e-10)


def test_bad_base_temperature_is_named_in_the_message() -> None:
    with pytest.raises(ValueError) as info:
        SupConLoss(0.1, base_temperature=0.0)
    assert str(info.value) == (
        "base_temperature must be a finite number > 0, got 0.0; typical values are "
        "0.05-0.5 (SimCLR uses 0.5, SupCon 0.1)."
    )


def test_hcl_beta_reaches_the_loss() -> None:
    emb, labels = _rand(12, 6, 3), torch.arange(12) % 3
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected = reference_hcl(emb.numpy(), pos, keep, 0.5, 1.0)
    got = SupConLoss(0.5, hcl_beta=1.0)(emb, labels).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert got != pytest.approx(reference_supcon(emb.numpy(), pos, keep, 0.5)[0], rel=1e-6)


def test_sample_ids_make_views_positives() -> None:
    emb = _rand(12, 6, 4)
    ids = torch.arange(12) % 6
    pos, keep = pair_masks_from_labels(ids.numpy())
    expected, _ = reference_supcon(emb.numpy(), pos, keep, 0.3)
    assert SupConLoss(0.3)(emb, sample_ids=ids).item() == pytest.approx(expected, rel=1e-10)


def test_mask_gives_the_positives() -> None:
    emb = _rand(10, 6, 5)
    mask = torch.rand(10, 10, generator=torch.Generator().manual_seed(5)) < 0.3
    keep = ~np.eye(10, dtype=bool)
    expected, _ = reference_supcon(emb.numpy(), mask.numpy() & keep, keep, 0.3)
    assert SupConLoss(0.3)(emb, mask=mask).item() == pytest.approx(expected, rel=1e-10)


def test_indices_tuple_restricts_the_pairs() -> None:
    emb, labels = _rand(8, 6, 6), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    a1, p = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    a2, n = torch.tensor([0, 0, 2, 4, 4]), torch.tensor([2, 7, 5, 1, 6])
    pos, keep = pair_masks_from_indices((a1, p, a2, n), 8)
    expected, _ = reference_supcon(emb.numpy(), pos, keep, 0.2)
    got = SupConLoss(0.2)(emb, labels, indices_tuple=(a1, p, a2, n)).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_ref_embeddings_and_labels_extend_the_candidates() -> None:
    emb, ref = _rand(8, 6, 7), _rand(5, 6, 8)
    labels, ref_labels = torch.arange(8) % 3, torch.tensor([0, 1, 2, 5, 6])
    pos, keep = pair_masks_from_labels(np.concatenate([labels.numpy(), ref_labels.numpy()]))
    expected, _ = reference_supcon(torch.cat([emb, ref]).numpy(), pos, keep, 0.1, num_anchors=8)
    got = SupConLoss(0.1)(emb, labels, ref_embeddings=ref, ref_labels=ref_labels).item()
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [({"tiled": True}, "tiled"), ({"path": "tiled"}, "tiled"), ({"tiled": False}, "dense")],
)
def test_tiled_and_path_choose_the_implementation(kwargs: dict, path: str) -> None:
    emb, labels = _rand(10, 6, 9), torch.arange(10) % 3
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected, _ = reference_supcon(emb.numpy(), pos, keep, 0.1)
    loss_fn = SupConLoss(0.1, **kwargs)
    assert loss_fn.last_stats is None
    assert loss_fn(emb, labels).item() == pytest.approx(expected, rel=1e-10)
    assert loss_fn.last_stats.path == path


def test_path_and_tiled_together_are_refused() -> None:
    with pytest.raises(ValueError) as info:
        SupConLoss(tiled=True, path="dense")
    assert str(info.value) == "pass either path='dense' or tiled=True, not both."


def test_repr_lists_the_options() -> None:
    assert repr(SupConLoss()) == (
        "SupConLoss(temperature=0.1, base_temperature=None, contrast_mode='all')"
    )
    loss_fn = SupConLoss(0.2, tiled=True, block_size=4, gather_distributed=True)
    assert loss_fn.block_size == 4 and loss_fn.gather_distributed is True
    assert repr(loss_fn) == (
        "SupConLoss(temperature=0.2, base_temperature=None, contrast_mode='all', tiled=True, "
        "block_size=4, gather_distributed=True)"
    )


def test_repr_lists_hcl_beta_and_path() -> None:
    loss_fn = SupConLoss(0.5, base_temperature=0.07, contrast_mode="one", hcl_beta=0.5)
    assert repr(loss_fn) == (
        "SupConLoss(temperature=0.5, base_temperature=0.07, contrast_mode='one', hcl_beta=0.5)"
    )
    assert repr(SupConLoss(path="dense")) == (
        "SupConLoss(temperature=0.1, base_temperature=None, contrast_mode='all', path='dense')"
    )
