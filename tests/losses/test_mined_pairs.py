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
    for tiled in (None, False, True):  # None: sparse when the pairs are sparse enough
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
    for tiled in (None, False, True):
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
    emb = emb.double()  # the surviving term is small (cancellation): compare in float64
    theirs = pml_losses.SupConLoss(0.1)(emb, labels, indices_tuple).item()
    for tiled in (None, False, True):  # sparse, dense, tiled
        got, stats = supcon_loss_with_stats(emb, labels, indices_tuple=indices_tuple, tiled=tiled)
        assert got.item() == pytest.approx(theirs, rel=1e-10)
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


def _random_pairs(n: int, k: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    anchors = torch.arange(n).repeat_interleave(k)
    negatives = torch.randint(0, n, (n * k,), generator=gen)
    positives = (anchors + 1 + torch.randint(0, 3, (n * k,), generator=gen)) % n
    order = torch.randperm(n * k, generator=gen)
    return anchors[order], positives[order], anchors, negatives


def test_many_mined_pairs_take_the_sparse_path_and_agree_with_dense_and_tiled() -> None:
    # O(B·k) pairs in random order, with duplicates: all three paths agree, value and gradient.
    n = 300
    emb = torch.randn(n, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    pairs = _random_pairs(n, 6, seed=6)
    results = {}
    for tiled in (None, False, True):
        leaf = emb.clone().requires_grad_()
        loss, stats = supcon_loss_with_stats(leaf, indices_tuple=pairs, tiled=tiled, block_size=17)
        loss.backward()
        results[stats.path] = (loss.item(), leaf.grad)
    assert set(results) == {"sparse", "dense", "tiled"}
    for path in ("sparse", "tiled"):
        assert results[path][0] == pytest.approx(results["dense"][0], rel=1e-12)
        torch.testing.assert_close(results[path][1], results["dense"][1], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_path_equals_dense_at_any_density(seed: int, monkeypatch) -> None:
    import supcon.losses.functional as functional

    monkeypatch.setattr(functional, "SPARSE_MAX_DENSITY", 2.0)  # force the sparse path
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(40, 2, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (40,), generator=gen)
    flat_labels = labels.repeat(2)
    indices_tuple = miners.MultiSimilarityMiner(0.1)(
        emb.transpose(0, 1).reshape(80, 6), flat_labels
    )
    for mode in ("all", "one"):
        values = {}
        for tiled in (None, False):
            leaf = emb.clone().requires_grad_()
            loss, stats = supcon_loss_with_stats(
                leaf, labels, indices_tuple=indices_tuple, contrast_mode=mode, tiled=tiled
            )
            loss.backward()
            values[stats.path] = (loss.item(), leaf.grad)
        assert values["sparse"][0] == pytest.approx(values["dense"][0], rel=1e-12)
        torch.testing.assert_close(values["sparse"][1], values["dense"][1], rtol=1e-9, atol=1e-13)


def test_sparse_gradient_passes_gradcheck() -> None:
    emb = torch.randn(100, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    pairs = _random_pairs(100, 2, seed=8)
    _, stats = supcon_loss_with_stats(emb, indices_tuple=pairs)
    assert stats.path == "sparse"
    assert torch.autograd.gradcheck(
        lambda e: supcon_loss(e, indices_tuple=pairs, temperature=0.3),
        (emb.requires_grad_(),),
        fast_mode=True,
    )


def test_sparse_pairs_at_an_anchor_offset_equal_the_structure_masks() -> None:
    """Under a distributed gather anchor r is column offset + r: its self-pair is dropped there."""
    from supcon.losses.sparse import SparsePairs
    from supcon.losses.structure import PairStructure

    gen = torch.Generator().manual_seed(3)
    num_anchors, num_cols, offset = 5, 12, 4
    pairs = [torch.randint(0, n, (40,), generator=gen) for n in (num_anchors, num_cols) * 2]
    for rows, cols in ((pairs[0], pairs[1]), (pairs[2], pairs[3])):
        cols[:num_anchors] = rows[:num_anchors] + offset  # self-pairs, to be removed
    structure = PairStructure(
        num_anchors,
        num_cols,
        pos_pairs=(pairs[0], pairs[1]),
        neg_pairs=(pairs[2], pairs[3]),
        anchor_offset=offset,
    )
    sparse = SparsePairs.from_structure(structure)
    positive, in_denominator = structure.block_masks(0, num_anchors)
    rows, cols = in_denominator.nonzero(as_tuple=True)  # row-major: the sparse pairs' order
    assert sparse.rows.tolist() == rows.tolist() and sparse.cols.tolist() == cols.tolist()
    assert sparse.positive.tolist() == positive[rows, cols].tolist()


def test_the_csr_beta_warning_is_silenced_and_nothing_else() -> None:
    """PyTorch warns once per process; ``set_warn_always`` makes it warn on every call."""
    import warnings

    from supcon.losses.sparse import _csr

    crow, cols, values = torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.ones(2)
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            _csr(crow, cols, values, (2, 2))
            assert not seen
            torch.sparse_csr_tensor(crow, cols, values, (2, 2))  # the warning _csr silences
            assert any("Sparse CSR tensor support is in beta" in str(w.message) for w in seen)
    finally:
        torch.set_warn_always(False)


def test_double_backward_message_names_the_path_and_the_fix() -> None:
    from supcon.losses import supcon_loss_with_stats

    gen = torch.Generator().manual_seed(4)
    emb = torch.randn(40, 3, generator=gen, dtype=torch.float64).requires_grad_()
    a1, p = torch.tensor([0, 5]), torch.tensor([1, 6])
    a2, n = torch.tensor([0, 5, 7]), torch.tensor([2, 9, 8])
    loss, stats = supcon_loss_with_stats(emb, indices_tuple=(a1, p, a2, n))
    assert stats.path == "sparse"
    with pytest.raises(RuntimeError) as info:
        torch.autograd.grad(loss, emb, create_graph=True)
    assert str(info.value) == (
        "supcon: the sparse loss is differentiable once; for higher-order gradients "
        "(create_graph=True) call the loss with tiled=False."
    )
