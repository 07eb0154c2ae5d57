"""indices_tuple from PML miners: same value as PML's SupConLoss, dense and tiled."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners

from supcon import SupConLoss, supcon_loss
from supcon.losses import supcon_loss_with_stats
from tests.reference import pair_masks_from_indices, reference_supcon

MINERS = {
    "BatchHardMiner": lambda: miners.BatchHardMiner(),
    "MultiSimilarityMiner": lambda: miners.MultiSimilarityMiner(epsilon=0.1),
    "TripletMarginMiner": lambda: miners.TripletMarginMiner(margin=0.2, type_of_triplets="all"),
    # PairMarginMiner measures Euclidean distance: negatives closer than neg_margin.
    "PairMarginMiner": lambda: miners.PairMarginMiner(pos_margin=0.2, neg_margin=1.2),
    "PairMarginMiner-default": lambda: miners.PairMarginMiner(),
    "PairMarginMiner-no-negatives": lambda: miners.PairMarginMiner(neg_margin=0.1),
    "BatchEasyHardMiner": lambda: miners.BatchEasyHardMiner(),
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(48, 16, generator=gen), torch.randint(0, 6, (48,), generator=gen)


@pytest.mark.filterwarnings("ignore:supcon. this batch has no negative pair")
@pytest.mark.parametrize("name", sorted(MINERS))
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_mined_pairs_equal_pml_supcon(name: str, temperature: float) -> None:
    emb, labels = _batch()
    indices_tuple = MINERS[name]()(emb, labels)
    theirs = pml_losses.SupConLoss(temperature=temperature)(emb, labels, indices_tuple).item()
    assert (theirs == 0.0) == name.endswith("no-negatives")
    for tiled in (False, True):
        ours = SupConLoss(temperature, tiled=tiled, block_size=7)
        got = ours(emb, labels, indices_tuple=indices_tuple).item()
        assert got == pytest.approx(theirs, rel=1e-5, abs=1e-6), (name, tiled)


@pytest.mark.parametrize("name", ["MultiSimilarityMiner", "TripletMarginMiner", "BatchHardMiner"])
def test_mined_pairs_match_the_float64_reference(name: str) -> None:
    emb, labels = _batch(seed=1)
    emb = emb.double()
    indices_tuple = MINERS[name]()(emb, labels)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices_tuple), len(emb))
    expected, without = reference_supcon(emb.numpy(), pos, keep, 0.1)
    for tiled in (False, True):
        got, stats = supcon_loss_with_stats(
            emb, labels, indices_tuple=indices_tuple, tiled=tiled, block_size=5
        )
        assert got.item() == pytest.approx(expected, rel=1e-10)
        assert stats.num_anchors_without_positives == without


def test_pairs_restrict_positives_and_denominators_without_labels() -> None:
    # indices_tuple alone (no labels) defines the structure; (a, p, n) triplets become pairs.
    gen = torch.Generator().manual_seed(2)
    emb = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    triplets = (torch.tensor([0, 0, 3, 5]), torch.tensor([1, 2, 4, 6]), torch.tensor([9, 8, 7, 7]))
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in triplets), 10)
    expected, _ = reference_supcon(emb.numpy(), pos, keep, 0.2)
    for tiled in (False, True):
        got = supcon_loss(emb, indices_tuple=triplets, temperature=0.2, tiled=tiled)
        assert got.item() == pytest.approx(expected, rel=1e-10)


def test_anchor_with_only_its_positive_is_left_out_like_pml() -> None:
    emb, labels = _batch(seed=3)
    labels = torch.arange(48) % 4
    # Anchor 0 gets a positive and no negative (term ≡ 0); anchor 1 a positive and a negative.
    a1, p = torch.tensor([0, 1]), torch.tensor([4, 5])
    a2, n = torch.tensor([1]), torch.tensor([2])
    indices_tuple = (a1, p, a2, n)
    theirs = pml_losses.SupConLoss(0.1)(emb, labels, indices_tuple).item()
    got, stats = supcon_loss_with_stats(emb, labels, indices_tuple=indices_tuple)
    assert got.item() == pytest.approx(theirs, rel=1e-6)
    assert stats.num_trivial_anchors == 1 and stats.num_anchors_in_mean == 1


def test_miner_without_negatives_gives_zero_like_pml() -> None:
    import supcon.losses.functional as functional

    functional._warned_no_negatives = False
    emb, labels = _batch(seed=4)
    emb.requires_grad_()
    indices_tuple = (
        torch.tensor([0, 0, 1]),
        torch.tensor([5, 6, 7]),
        torch.tensor([]),
        torch.tensor([]),
    )
    with pytest.warns(RuntimeWarning, match="no negative pair"):
        loss = supcon_loss(emb, labels, indices_tuple=indices_tuple)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(emb.grad == 0)


def test_many_mined_pairs_are_sorted_once_and_sliced_per_block() -> None:
    # O(B·k) pairs in random order: the tiled path must agree with the dense one.
    gen = torch.Generator().manual_seed(5)
    n, k = 300, 6
    emb = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    anchors = torch.arange(n).repeat_interleave(k)
    negatives = torch.randint(0, n, (n * k,), generator=gen)
    positives = (anchors + 1 + torch.randint(0, 3, (n * k,), generator=gen)) % n
    order = torch.randperm(n * k, generator=gen)
    pairs = (anchors[order], positives[order], anchors, negatives)
    dense = supcon_loss(emb, indices_tuple=pairs, tiled=False)
    tiled = supcon_loss(emb, indices_tuple=pairs, tiled=True, block_size=17)
    assert tiled.item() == pytest.approx(dense.item(), rel=1e-12)
