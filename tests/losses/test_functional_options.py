"""Options of ``supcon_loss_with_stats``: defaults, messages, path choice and tile size.

Each test pins one option's observable effect (value against the float64 loop reference,
the path :class:`LossStats` reports, the exact message, or what reaches the tiled sweep), so a
changed default or a dropped argument fails here.
"""

from __future__ import annotations

import pytest
import torch

import supcon.losses.functional as functional
from supcon.losses import supcon_loss_with_stats
from tests.reference import pair_masks_from_indices, pair_masks_from_labels, reference_supcon


def _rand(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_default_temperature_is_0_1_against_the_float64_reference() -> None:
    emb, labels = _rand(10, 5, seed=1), torch.arange(10) % 3
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected, without = reference_supcon(emb.numpy(), pos, keep, 0.1)
    loss, stats = supcon_loss_with_stats(emb, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats.num_anchors_without_positives == without == 0
    # A different temperature gives a different value, so the comparison above can fail.
    assert reference_supcon(emb.numpy(), pos, keep, 1.1)[0] != pytest.approx(expected, rel=1e-3)


def test_unknown_path_message_lists_the_choices() -> None:
    with pytest.raises(ValueError) as info:
        supcon_loss_with_stats(_rand(4, 3), torch.arange(4) % 2, path="fast")
    assert str(info.value) == "path must be one of auto, dense, tiled, sparse, got 'fast'."


def test_path_and_tiled_together_name_both() -> None:
    with pytest.raises(ValueError) as info:
        supcon_loss_with_stats(_rand(4, 3), torch.arange(4) % 2, path="dense", tiled=True)
    assert str(info.value) == "pass either path='dense' or tiled=True, not both."


def test_bad_base_temperature_message_names_it() -> None:
    with pytest.raises(ValueError) as info:
        supcon_loss_with_stats(_rand(4, 3), torch.arange(4) % 2, base_temperature=0)
    assert str(info.value).startswith("base_temperature must be a finite number > 0, got 0;")


def test_no_gather_unless_asked(monkeypatch) -> None:
    """The default ``gather_distributed=False`` never calls the gather."""
    import supcon.losses.inputs as inputs

    calls: list[int] = []

    def spy(rows):
        calls.append(rows.flat.shape[0])
        return rows, 0, False

    monkeypatch.setattr(inputs, "gather_rows", spy, raising=False)
    supcon_loss_with_stats(_rand(6, 4), torch.arange(6) % 2)
    assert calls == []
    supcon_loss_with_stats(_rand(6, 4), torch.arange(6) % 2, gather_distributed=True)
    assert calls == [6]


@pytest.mark.parametrize("block_size", [1, 3, 64])
def test_block_size_reaches_the_tiled_sweep(block_size: int, monkeypatch) -> None:
    """Rows per tile: the caller's ``block_size``, capped at the anchor count (at least 1)."""
    seen: list[int] = []
    real = functional.tiled_loss_sum

    def spy(z, plan):
        seen.append(plan.block_rows)
        return real(z, plan)

    monkeypatch.setattr(functional, "tiled_loss_sum", spy)
    emb, labels = _rand(7, 4, seed=2), torch.arange(7) % 3
    tiled, stats = supcon_loss_with_stats(emb, labels, path="tiled", block_size=block_size)
    assert stats.path == "tiled" and seen == [min(block_size, 7)]
    pos, keep = pair_masks_from_labels(labels.numpy())
    assert tiled.item() == pytest.approx(reference_supcon(emb.numpy(), pos, keep, 0.1)[0], 1e-12)


@pytest.mark.parametrize(("negatives", "path"), [(1, "sparse"), (2, "dense"), (3, "dense")])
def test_sparse_only_below_the_density_threshold(negatives: int, path: str) -> None:
    """8 x 8 matrix, threshold 1/16: 4 mined pairs (= 64 / 16) is no longer sparse."""
    assert functional.SPARSE_MAX_DENSITY == 1 / 16
    emb = _rand(8, 4, seed=3)
    pairs = (
        torch.tensor([0, 1]),
        torch.tensor([2, 3]),
        torch.tensor([0, 1, 4][:negatives]),
        torch.tensor([5, 6, 7][:negatives]),
    )
    loss, stats = supcon_loss_with_stats(emb, indices_tuple=pairs)
    assert stats.path == path
    pos, keep = pair_masks_from_indices(pairs, 8)
    assert loss.item() == pytest.approx(reference_supcon(emb.numpy(), pos, keep, 0.1)[0], 1e-12)
