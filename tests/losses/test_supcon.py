"""SupConLoss / supcon_loss against the float64 reference and against PML."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from supcon import SupConLoss, supcon_loss
from tests.reference import (
    flatten_views,
    numerical_gradient,
    pair_masks_from_labels,
    reference_supcon,
)


def _rand(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_labels_match_reference(temperature: float) -> None:
    emb = _rand(24, 16)
    labels = torch.randint(0, 5, (24,), generator=torch.Generator().manual_seed(1))
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected, without = reference_supcon(emb.numpy(), pos, keep, temperature)
    loss_fn = SupConLoss(temperature)
    got = loss_fn(emb, labels)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert loss_fn.last_stats.num_anchors_without_positives == without


@pytest.mark.parametrize("views", [2, 3, 4])
def test_views_without_labels_match_reference(views: int) -> None:
    emb = _rand(10, views, 8, seed=views)
    flat = flatten_views(emb.numpy())
    sample_ids = np.tile(np.arange(10), views)
    pos, keep = pair_masks_from_labels(sample_ids)
    expected, _ = reference_supcon(flat, pos, keep, 0.2)
    assert supcon_loss(emb, temperature=0.2).item() == pytest.approx(expected, rel=1e-10)
    # (N, D) + sample_ids is the same batch.
    got = supcon_loss(
        torch.from_numpy(flat), sample_ids=torch.from_numpy(sample_ids), temperature=0.2
    )
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_views_with_labels_match_reference() -> None:
    emb = _rand(12, 2, 8, seed=3)
    labels = torch.arange(12) % 4
    flat = flatten_views(emb.numpy())
    pos, keep = pair_masks_from_labels(np.tile(labels.numpy(), 2))
    expected, _ = reference_supcon(flat, pos, keep, 0.1)
    assert supcon_loss(emb, labels).item() == pytest.approx(expected, rel=1e-10)


def test_contrast_mode_one_uses_first_view_as_anchors() -> None:
    emb = _rand(8, 3, 8, seed=4)
    labels = torch.arange(8) % 3
    flat = flatten_views(emb.numpy())
    pos, keep = pair_masks_from_labels(np.tile(labels.numpy(), 3))
    expected, _ = reference_supcon(flat, pos, keep, 0.1, num_anchors=8)
    got = SupConLoss(0.1, contrast_mode="one")(emb, labels)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_multi_hot_labels_share_a_class() -> None:
    gen = torch.Generator().manual_seed(5)
    multi = (torch.rand(16, 4, generator=gen) < 0.3).long()
    emb = _rand(16, 8, seed=5)
    pos, keep = pair_masks_from_labels(multi.numpy())
    expected, without = reference_supcon(emb.numpy(), pos, keep, 0.1)
    loss_fn = SupConLoss(0.1)
    assert loss_fn(emb, multi).item() == pytest.approx(expected, rel=1e-10)
    assert loss_fn.last_stats.num_anchors_without_positives == without


def test_explicit_mask() -> None:
    gen = torch.Generator().manual_seed(6)
    mask = torch.rand(12, 12, generator=gen) < 0.3
    emb = _rand(12, 8, seed=6)
    keep = ~np.eye(12, dtype=bool)
    expected, _ = reference_supcon(emb.numpy(), mask.numpy() & keep, keep, 0.3)
    assert supcon_loss(emb, mask=mask, temperature=0.3).item() == pytest.approx(expected, rel=1e-10)


def test_base_temperature_scales_the_loss() -> None:
    emb = _rand(16, 8)
    labels = torch.arange(16) % 4
    plain = supcon_loss(emb, labels, temperature=0.1)
    scaled = supcon_loss(emb, labels, temperature=0.1, base_temperature=0.07)
    assert scaled.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-12)


def test_ref_embeddings_extend_the_candidates() -> None:
    emb, ref = _rand(10, 8, seed=7), _rand(6, 8, seed=8)
    labels, ref_labels = torch.arange(10) % 3, torch.arange(6) % 4
    all_labels = np.concatenate([labels.numpy(), ref_labels.numpy()])
    pos, keep = pair_masks_from_labels(all_labels)
    expected, _ = reference_supcon(torch.cat([emb, ref]).numpy(), pos, keep, 0.1, num_anchors=10)
    got = supcon_loss(emb, labels, ref_embeddings=ref, ref_labels=ref_labels)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_anchors_without_positives_are_excluded_and_counted() -> None:
    emb = _rand(6, 8)
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    loss_fn = SupConLoss(0.1)
    loss = loss_fn(emb, labels)
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected, without = reference_supcon(emb.numpy(), pos, keep, 0.1)
    assert without == 2 and loss_fn.last_stats.num_anchors_without_positives == 2
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_no_positive_at_all_returns_graph_tied_zero() -> None:
    emb = _rand(5, 8).requires_grad_()
    with pytest.warns(RuntimeWarning, match="no anchor"):
        import supcon.losses.functional as functional

        functional._warned_no_positives = False
        loss = supcon_loss(emb, torch.arange(5))
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and torch.all(emb.grad == 0)


def test_dense_gradient_matches_the_float64_reference_gradient() -> None:
    """Autograd of the dense path = central differences of the loop reference (float64)."""
    emb = _rand(12, 6, seed=9).requires_grad_()
    labels = torch.arange(12) % 3
    supcon_loss(emb, labels, temperature=0.2, tiled=False).backward()
    pos, keep = pair_masks_from_labels(labels.numpy())
    expected = numerical_gradient(
        lambda x: reference_supcon(x, pos, keep, 0.2)[0], emb.detach().numpy()
    )
    np.testing.assert_allclose(emb.grad.numpy(), expected, atol=1e-7)


def test_dense_gradient_passes_gradcheck() -> None:
    """Self-consistency only (autograd vs finite differences of the same code)."""
    emb = _rand(12, 6, seed=9).requires_grad_()
    labels = torch.arange(12) % 3
    assert torch.autograd.gradcheck(lambda e: supcon_loss(e, labels, temperature=0.2), (emb,))


@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_equals_pml_supcon_with_labels(temperature: float) -> None:
    emb = _rand(64, 32, dtype=torch.float32)
    labels = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(2))
    ours = supcon_loss(emb, labels, temperature=temperature)
    theirs = pml_losses.SupConLoss(temperature=temperature)(emb, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_equals_pml_self_supervised_ntxent_on_two_views(temperature: float) -> None:
    a, b = _rand(32, 16, seed=10, dtype=torch.float32), _rand(32, 16, seed=11, dtype=torch.float32)
    theirs = pml_losses.SelfSupervisedLoss(pml_losses.NTXentLoss(temperature))(a, b)
    ours = supcon_loss(torch.stack([a, b], dim=1), temperature=temperature)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_half_precision_inputs_are_computed_in_float32() -> None:
    emb32 = _rand(32, 16, dtype=torch.float32)
    labels = torch.arange(32) % 4
    ref = supcon_loss(emb32, labels).item()
    for dtype in (torch.float16, torch.bfloat16):
        got = supcon_loss(emb32.to(dtype), labels)
        assert got.dtype == dtype
        assert got.float().item() == pytest.approx(ref, rel=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embeddings": torch.randn(4, 8, dtype=torch.float64)}, "no labels"),
        ({"embeddings": torch.randn(4, 1, 8)}, "V=1"),
        ({"embeddings": torch.randn(4, 8), "labels": torch.arange(5)}, "labels has 5 rows"),
        ({"embeddings": torch.randn(4, 8), "labels": torch.tensor([0.5, 1, 2, 3])}, "integer"),
        (
            {
                "embeddings": torch.tensor([[float("nan"), 1.0], [1.0, 2.0]]),
                "labels": torch.arange(2),
            },
            "NaN or inf in 1 row",
        ),
        ({"embeddings": torch.randn(0, 8), "labels": torch.arange(0)}, "empty"),
        (
            {"embeddings": torch.randn(4, 8), "labels": torch.arange(4), "temperature": 0.0},
            "temperature",
        ),
        (
            {"embeddings": torch.randn(4, 8), "labels": torch.arange(4), "temperature": -1},
            "temperature",
        ),
        (
            {"embeddings": torch.randn(2, 3, 4, 5), "labels": torch.arange(2)},
            r"\(N, D\) or \(B, V, D\)",
        ),
        (
            {"embeddings": torch.randn(4, 8), "labels": torch.arange(4), "contrast_mode": "any"},
            "contrast_mode",
        ),
        (
            {"embeddings": torch.randn(4, 8), "labels": torch.arange(4), "mask": torch.eye(4)},
            "only one of",
        ),
        ({"embeddings": torch.randn(4, 8), "mask": torch.eye(3)}, r"mask must be \(4, 4\)"),
        (
            {
                "embeddings": torch.randn(4, 8),
                "labels": torch.arange(4),
                "ref_embeddings": torch.randn(3, 7),
                "ref_labels": torch.arange(3),
            },
            "ref_embeddings must be",
        ),
        ({"embeddings": torch.arange(8).view(4, 2), "labels": torch.arange(4)}, "floating-point"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs: dict, match: str) -> None:
    kwargs = dict(kwargs)  # the parameters are shared between runs in one process (mutmut)
    temperature = kwargs.pop("temperature", 0.1)
    contrast_mode = kwargs.pop("contrast_mode", "all")
    embeddings = kwargs.pop("embeddings")
    with pytest.raises(ValueError, match=match):
        supcon_loss(embeddings, temperature=temperature, contrast_mode=contrast_mode, **kwargs)


def test_module_rejects_bad_temperature_at_construction() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0)
    with pytest.raises(ValueError, match="contrast_mode"):
        SupConLoss(contrast_mode="first")


def test_no_positive_warning_once_in_full(monkeypatch) -> None:
    import warnings

    import supcon.losses.functional as functional
    from supcon.losses import supcon_loss_with_stats

    monkeypatch.setattr(functional, "_warned_no_positives", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):
            supcon_loss_with_stats(_rand(4, 3), torch.arange(4))
    assert len(seen) == 1 and seen[0].category is RuntimeWarning
    assert str(seen[0].message) == (
        "supcon: no anchor in this batch has a positive (and something to contrast it with), "
        "so the loss is 0. Use a sampler that puts several samples per class in a batch "
        "(supcon.samplers.MPerClassSampler) or pass two or more views per sample."
    )


def test_path_sparse_needs_mined_pairs_without_hcl() -> None:
    message = (
        "path='sparse' needs mined pairs (indices_tuple from a miner) and hcl_beta=0; "
        "use path='auto' otherwise."
    )
    emb, labels = _rand(8, 4, seed=3), torch.arange(8) % 3
    pairs = (torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([0, 1]), torch.tensor([1, 2]))
    for kwargs in ({"labels": labels}, {"indices_tuple": pairs, "hcl_beta": 0.5}):
        with pytest.raises(ValueError) as info:
            supcon_loss(emb, path="sparse", **kwargs)
        assert str(info.value) == message
    sparse = supcon_loss(emb, indices_tuple=pairs, path="sparse")
    dense = supcon_loss(emb, indices_tuple=pairs, path="dense")
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-12) and sparse.item() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_l2_normalize_per_row_without_overflow_underflow_or_nan(dtype: torch.dtype) -> None:
    """Rows of norm ~1e30 and ~1e-30 side by side (squares overflow / underflow in float32)."""
    from supcon.losses.functional import l2_normalize

    base = _rand(3, 4, seed=5)
    rows = torch.stack([base[0] * 1e30, base[1] * 1e-30, torch.zeros(4, dtype=base.dtype), base[2]])
    got = l2_normalize(rows.to(dtype))
    expected = base / base.norm(dim=1, keepdim=True)
    torch.testing.assert_close(got[[0, 1, 3]].double(), expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(got[2], torch.zeros(4, dtype=dtype))


def test_supcon_loss_gathers_only_when_asked(monkeypatch) -> None:
    import supcon.losses.gather as gather
    import supcon.losses.inputs as inputs

    calls = []

    def spy(rows):
        calls.append(rows.flat.shape[0])
        return rows, 0, False

    monkeypatch.setattr(gather, "gather_rows", spy)
    monkeypatch.setattr(inputs, "gather_rows", spy, raising=False)
    emb, labels = _rand(6, 4, seed=4), torch.arange(6) % 2
    plain = supcon_loss(emb, labels)
    assert calls == []
    assert supcon_loss(emb, labels, gather_distributed=True).item() == plain.item()
    assert calls == [6]


def test_no_negative_warning_once_in_full(monkeypatch) -> None:
    import warnings

    import supcon.losses.functional as functional
    from supcon.losses import supcon_loss_with_stats

    monkeypatch.setattr(functional, "_warned_no_negatives", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):
            loss, _ = supcon_loss_with_stats(_rand(4, 3), torch.zeros(4, dtype=torch.long))
            assert loss.item() == 0.0
    assert len(seen) == 1 and seen[0].category is RuntimeWarning
    assert str(seen[0].message) == (
        "supcon: this batch has no negative pair (a single class, or a miner that returned no "
        "negatives), so the loss is 0 as in PML. Use batches with several classes, or loosen "
        "the miner's negative margin."
    )


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in __import__("os").environ,
    reason="mutmut's trampolines add a stack frame, so stacklevel points elsewhere there",
)
@pytest.mark.parametrize("labels", [torch.arange(4), torch.zeros(4, dtype=torch.long)])
def test_loss_warnings_point_at_the_callers_line(labels: torch.Tensor, monkeypatch) -> None:
    import warnings

    import supcon.losses.functional as functional
    from supcon.losses import supcon_loss_with_stats

    monkeypatch.setattr(functional, "_warned_no_positives", False)
    monkeypatch.setattr(functional, "_warned_no_negatives", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        supcon_loss_with_stats(_rand(4, 3), labels)
    assert [w.filename for w in seen] == [__file__]
