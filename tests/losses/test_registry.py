"""The loss registry: names ↔ PML classes, argument checks, and the builder against PML."""

from __future__ import annotations

import inspect

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from supcon import SupConLoss
from supcon.builders import build_loss, build_miner
from supcon.config import LossConfig, MinerConfig
from supcon.losses.registry import _EXCLUDED, loss_problems, losses, snake_case
from supcon.training.criterion import pml_batch_loss

# The names the README and the issue promise, with the PML class each must build.
PROMISED = {
    "arcface": pml_losses.ArcFaceLoss,
    "cosface": pml_losses.CosFaceLoss,
    "proxy_anchor": pml_losses.ProxyAnchorLoss,
    "proxy_nca": pml_losses.ProxyNCALoss,
    "normalized_softmax": pml_losses.NormalizedSoftmaxLoss,
    "soft_triple": pml_losses.SoftTripleLoss,
    "multi_similarity": pml_losses.MultiSimilarityLoss,
    "triplet_margin": pml_losses.TripletMarginLoss,
    "contrastive": pml_losses.ContrastiveLoss,
    "circle": pml_losses.CircleLoss,
    "ntxent": pml_losses.NTXentLoss,
    "lifted_structure": pml_losses.LiftedStructureLoss,
    "supcon": SupConLoss,
}


def test_every_pml_loss_is_registered_once_or_excluded_with_a_reason() -> None:
    table = losses()
    for name, cls in PROMISED.items():
        assert table[name].cls is cls, name
    concrete = {
        name: cls
        for name, cls in vars(pml_losses).items()
        if inspect.isclass(cls) and issubclass(cls, pml_losses.BaseMetricLossFunction)
    }
    registered = {spec.cls for spec in table.values()}
    for class_name, cls in concrete.items():
        assert (cls in registered) != (class_name in _EXCLUDED), class_name
    assert len(registered) == len(table)  # one name per class
    assert {n for n, s in table.items() if s.class_based} >= {
        "arcface", "cosface", "proxy_anchor", "proxy_nca", "normalized_softmax", "soft_triple",
    }  # fmt: skip
    assert not table["multi_similarity"].class_based and not table["supcon"].class_based


@pytest.mark.parametrize(
    ("class_name", "name"),
    [("ProxyNCALoss", "proxy_nca"), ("NTXentLoss", "ntxent"), ("FastAPLoss", "fast_ap"),
     ("SubCenterArcFaceLoss", "subcenter_arcface"), ("NPairsLoss", "n_pairs")],
)  # fmt: skip
def test_snake_case_names(class_name: str, name: str) -> None:
    assert snake_case(class_name) == name


def test_unknown_names_and_arguments_list_the_valid_ones() -> None:
    (unknown,) = loss_problems("arcfce", {})
    assert unknown.startswith("unknown loss.name 'arcfce'; choose one of: arcface,")
    assert "multi_similarity" in unknown and "supcon" in unknown
    (bad_arg,) = loss_problems("arcface", {"margn": 0.5})
    assert "['margn'] are not arguments of ArcFaceLoss" in bad_arg
    assert "valid: " in bad_arg and "margin" in bad_arg and "scale" in bad_arg
    assert "num_classes" not in bad_arg.split("valid: ")[1]  # filled in, not the user's
    (filled,) = loss_problems("proxy_anchor", {"num_classes": 3})
    assert "set from the data and model" in filled
    assert loss_problems("triplet_margin", {"margin": 0.1}) == []


def test_class_based_losses_get_classes_and_embedding_size() -> None:
    arcface = build_loss(LossConfig(name="arcface"), num_classes=7, embedding_size=12)
    assert arcface.W.shape == (12, 7)
    with pytest.raises(ValueError, match="needs num_classes"):
        build_loss(LossConfig(name="proxy_anchor"), embedding_size=12)
    supcon = build_loss(LossConfig(hcl_beta=0.5, path="tiled", block_size=8), distributed=True)
    assert isinstance(supcon, SupConLoss)
    assert (supcon.hcl_beta, supcon.block_size, supcon.gather_distributed) == (0.5, 8, True)
    supcon(torch.randn(6, 2, 4), torch.tensor([0, 1, 0, 1, 2, 2]))
    assert supcon.last_stats.path == "tiled"


def _batch(views: int = 2, samples: int = 12, dim: int = 8):
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(samples * views, dim, generator=generator, dtype=torch.float64)
    return embeddings, torch.arange(samples) % 4


@pytest.mark.parametrize(
    ("name", "args"),
    [("arcface", {"margin": 28.6, "scale": 64}), ("proxy_anchor", {"margin": 0.2}),
     ("triplet_margin", {"margin": 0.1}), ("contrastive", {})],
)  # fmt: skip
def test_builder_and_step_equal_pml_called_directly(name: str, args: dict) -> None:
    """Views are flattened view-major with repeated labels, as PML users do by hand."""
    embeddings, labels = _batch()
    torch.manual_seed(0)
    ours = build_loss(LossConfig(name=name, args=args), num_classes=4, embedding_size=8).double()
    torch.manual_seed(0)
    theirs = PROMISED[name](**args, **({"num_classes": 4, "embedding_size": 8}
                                       if losses()[name].class_based else {})).double()  # fmt: skip
    value = pml_batch_loss(ours, embeddings, labels, views=2)
    rows = embeddings.view(12, 2, 8).transpose(0, 1).reshape(24, 8)
    expected = theirs(rows, labels.repeat(2))
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    assert value.item() > 0


def test_miner_pairs_feed_a_pml_loss_and_views_without_labels() -> None:
    embeddings, labels = _batch()
    rows = embeddings.view(12, 2, 8).transpose(0, 1).reshape(24, 8)
    row_labels = labels.repeat(2)
    loss = build_loss(LossConfig(name="multi_similarity"))
    miner = build_miner(MinerConfig(name="multi_similarity", args={"epsilon": 0.1}))
    pairs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(rows, row_labels)
    expected = pml_losses.MultiSimilarityLoss()(rows, row_labels, pairs)
    value = pml_batch_loss(loss, embeddings, labels, views=2, miner=miner)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    # No labels: each sample is its own class (the other view is the positive).
    ntxent = build_loss(LossConfig(name="ntxent", args={"temperature": 0.2}))
    expected = pml_losses.NTXentLoss(0.2)(rows, torch.arange(12).repeat(2))
    torch.testing.assert_close(pml_batch_loss(ntxent, embeddings, None, 2), expected)


def test_path_forces_one_implementation_with_the_same_value() -> None:
    embeddings, labels = _batch(views=1, samples=40)
    pairs = pml_miners.BatchHardMiner()(embeddings, labels)
    values = {}
    for path in ("dense", "tiled", "sparse", "auto"):
        loss_fn = SupConLoss(0.1, path=path)
        values[path] = loss_fn(embeddings, labels, indices_tuple=pairs)
        assert loss_fn.last_stats.path == ("sparse" if path == "auto" else path)
    for value in values.values():
        torch.testing.assert_close(value, values["dense"], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="path='sparse' needs mined pairs"):
        SupConLoss(0.1, path="sparse")(embeddings, labels)
    with pytest.raises(ValueError, match="either path='dense' or tiled=True"):
        SupConLoss(0.1, path="dense", tiled=True)


def test_pml_memory_wrapper_equals_pml_cross_batch_memory() -> None:
    """``loss.memory_size`` on a PML pair loss is PML's own XBM, step after step."""
    config = LossConfig(name="contrastive", memory_size=64)
    ours = build_loss(config, embedding_size=8).double()
    theirs = pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(), 8, memory_size=64).double()
    for step in range(3):
        embeddings, labels = _batch(samples=12 + step)
        rows = embeddings.view(-1, 2, 8).transpose(0, 1).reshape(-1, 8)
        value = pml_batch_loss(ours, embeddings, labels, views=2)
        torch.testing.assert_close(value, theirs(rows, labels.repeat(2)), rtol=0, atol=0)
    state = ours.state_dict()
    assert state["_extra_state"] == {"queue_idx": (24 + 26 + 28) % 64, "has_been_filled": True}
    restored = build_loss(config, embedding_size=8).double()
    restored.load_state_dict(state)
    assert restored.queue_idx == 14 and torch.equal(
        restored.embedding_memory, ours.embedding_memory
    )
    # Before loss.memory_start_epoch the plain loss runs and nothing is enqueued.
    before = pml_batch_loss(ours, embeddings, labels, views=2, use_memory=False)
    torch.testing.assert_close(before, pml_losses.ContrastiveLoss()(rows, labels.repeat(2)))
    assert ours.queue_idx == 14
