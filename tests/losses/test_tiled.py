"""The tiled path against the dense path and the float64 reference, value and gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import SupConLoss, supcon_loss
from supcon.losses import AUTO_TILE_ELEMENTS, supcon_loss_with_stats
from tests.reference import flatten_views, pair_masks_from_labels, reference_supcon


def _rand(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _value_and_grad(embeddings: torch.Tensor, **kwargs) -> tuple[float, torch.Tensor]:
    leaf = embeddings.detach().clone().requires_grad_()
    loss = supcon_loss(leaf, **kwargs)
    loss.backward()
    return loss.item(), leaf.grad


def _batches() -> dict[str, tuple[torch.Tensor, dict]]:
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5, (30,), generator=gen)
    return {
        "labels": (_rand(30, 12, seed=1), {"labels": labels}),
        "views2": (_rand(15, 2, 12, seed=2), {}),
        "views3": (_rand(10, 3, 12, seed=3), {}),
        "views+labels": (_rand(15, 2, 12, seed=4), {"labels": labels[:15]}),
        "contrast_one": (_rand(15, 3, 12, seed=5), {"labels": labels[:15], "contrast_mode": "one"}),
        "multi_hot": (_rand(30, 12, seed=6), {"labels": (torch.rand(30, 4, generator=gen) < 0.3)}),
        "mask": (_rand(30, 12, seed=7), {"mask": torch.rand(30, 30, generator=gen) < 0.2}),
        "sample_ids": (_rand(30, 12, seed=8), {"sample_ids": torch.arange(30) % 11}),
        "refs": (
            _rand(30, 12, seed=9),
            {
                "labels": labels,
                "ref_embeddings": _rand(17, 12, seed=10),
                "ref_labels": torch.arange(17) % 6,
            },
        ),
        "hcl": (_rand(30, 12, seed=11), {"labels": labels, "hcl_beta": 0.8}),
        "hcl_views": (_rand(15, 2, 12, seed=12), {"hcl_beta": 2.0, "temperature": 0.3}),
    }


BATCHES = _batches()


@pytest.mark.parametrize("name", sorted(BATCHES))
@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_tiled_equals_dense_in_float64(name: str, block_size: int) -> None:
    embeddings, kwargs = BATCHES[name]
    dense_value, dense_grad = _value_and_grad(embeddings, tiled=False, **kwargs)
    tiled_value, tiled_grad = _value_and_grad(
        embeddings, tiled=True, block_size=block_size, **kwargs
    )
    assert tiled_value == pytest.approx(dense_value, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(tiled_grad, dense_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_tiled_equals_dense_in_float32(name: str) -> None:
    embeddings, kwargs = BATCHES[name]
    embeddings = embeddings.float()
    kwargs = {k: v.float() if k == "ref_embeddings" else v for k, v in kwargs.items()}
    dense_value, dense_grad = _value_and_grad(embeddings, tiled=False, **kwargs)
    tiled_value, tiled_grad = _value_and_grad(embeddings, tiled=True, block_size=8, **kwargs)
    assert tiled_value == pytest.approx(dense_value, rel=2e-6)
    torch.testing.assert_close(tiled_grad, dense_grad, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("tiled", [False, True])
def test_both_paths_match_the_reference(tiled: bool) -> None:
    emb = _rand(12, 3, 8, seed=20)
    labels = torch.arange(12) % 5
    flat = flatten_views(emb.numpy())
    pos, keep = pair_masks_from_labels(np.tile(labels.numpy(), 3))
    expected, without = reference_supcon(flat, pos, keep, 0.15)
    got, stats = supcon_loss_with_stats(emb, labels, temperature=0.15, tiled=tiled, block_size=5)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert stats.tiled is tiled
    assert stats.num_anchors_without_positives == without


def test_tiled_gradient_passes_gradcheck() -> None:
    emb = _rand(9, 2, 5, seed=21).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4])
    for kwargs in ({"labels": labels}, {}, {"labels": labels, "hcl_beta": 0.5}):
        assert torch.autograd.gradcheck(
            lambda e, kw=kwargs: supcon_loss(e, tiled=True, block_size=4, temperature=0.3, **kw),
            (emb,),
            fast_mode=True,
        )


def test_reference_rows_get_gradient_only_when_they_ask() -> None:
    emb, ref = _rand(20, 8, seed=22), _rand(9, 8, seed=23)
    labels, ref_labels = torch.arange(20) % 4, torch.arange(9) % 4
    grads = {}
    for tiled in (False, True):
        e, r = emb.clone().requires_grad_(), ref.clone().requires_grad_()
        supcon_loss(e, labels, ref_embeddings=r, ref_labels=ref_labels, tiled=tiled).backward()
        grads[tiled] = (e.grad, r.grad)
    torch.testing.assert_close(grads[True][0], grads[False][0])
    torch.testing.assert_close(grads[True][1], grads[False][1])
    assert grads[True][1].abs().sum() > 0
    # A queue that does not require grad still gives the same embedding gradient.
    e = emb.clone().requires_grad_()
    supcon_loss(e, labels, ref_embeddings=ref, ref_labels=ref_labels, tiled=True).backward()
    torch.testing.assert_close(e.grad, grads[False][0])


def test_auto_switches_to_tiled_above_the_threshold() -> None:
    side = int(AUTO_TILE_ELEMENTS**0.5)
    small = supcon_loss_with_stats(
        _rand(side - 1, 4, dtype=torch.float32), torch.arange(side - 1) % 3
    )
    large = supcon_loss_with_stats(_rand(side, 4, dtype=torch.float32), torch.arange(side) % 3)
    assert small[1].tiled is False
    assert large[1].tiled is True
    loss_fn = SupConLoss(tiled=False)
    loss_fn(_rand(side, 4, dtype=torch.float32), torch.arange(side) % 3)
    assert loss_fn.last_stats.tiled is False


def test_tiled_without_grad_gives_the_same_value() -> None:
    emb = _rand(40, 6, seed=24)
    labels = torch.arange(40) % 7
    with torch.no_grad():
        value = supcon_loss(emb, labels, tiled=True, block_size=9)
    assert value.item() == pytest.approx(supcon_loss(emb, labels, tiled=False).item(), rel=1e-12)
    assert not value.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiled_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    emb = _rand(64, 16, seed=25, dtype=torch.float32)
    labels = torch.arange(64) % 8
    leaf = emb.to(dtype).requires_grad_()
    loss = supcon_loss(leaf, labels, tiled=True, block_size=16)
    loss.backward()
    assert loss.dtype == dtype and leaf.grad.dtype == dtype
    assert torch.isfinite(leaf.grad.float()).all()
    reference = supcon_loss(emb.to(dtype).float(), labels, tiled=False)
    assert loss.float().item() == pytest.approx(reference.item(), rel=1e-2)


def test_no_positive_anywhere_returns_graph_tied_zero_on_tiled_path() -> None:
    import supcon.losses.functional as functional

    functional._warned_no_positives = False
    emb = _rand(6, 4).requires_grad_()
    with pytest.warns(RuntimeWarning, match="no anchor"):
        loss = supcon_loss(emb, torch.arange(6), tiled=True, block_size=2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(emb.grad == 0)


def test_double_backward_needs_the_dense_path() -> None:
    emb = _rand(8, 4).requires_grad_()
    labels = torch.arange(8) % 2
    (grad,) = torch.autograd.grad(supcon_loss(emb, labels, tiled=False), emb, create_graph=True)
    grad.sum().backward()  # works on the dense path
    assert emb.grad is not None
    with pytest.raises(RuntimeError, match=r"the tiled loss is differentiable once; .*tiled=False"):
        torch.autograd.grad(supcon_loss(emb, labels, tiled=True), emb, create_graph=True)


@pytest.mark.parametrize(
    ("anchors", "cols", "device", "expected"),
    [
        (10_000, 4096, "cpu", (1 << 22) // 4096),  # 16 MiB of float32 per tile on CPU
        (10_000, 100_000, "cpu", 128),  # never thinner than blocks.MIN_TILE_ROWS
        (50, 4096, "cpu", 50),  # never more rows than anchors
        (100_000, 4096, "cuda", (1 << 26) // 4096),  # 256 MiB on CUDA
        (100_000, 4096, "mps", (1 << 26) // 4096),  # other accelerators: CUDA's budget
        (5, 0, "cpu", 5),  # no candidates: no division by zero
        (1, 10, "cpu", 1),  # a single anchor: a single row
    ],
)
def test_default_block_rows_follows_the_documented_budget(
    anchors: int, cols: int, device: str, expected: int
) -> None:
    from supcon.losses.tiled import default_block_rows

    rows = default_block_rows(anchors, cols, device)
    assert rows == expected and isinstance(rows, int)
    if device == "cpu":
        assert default_block_rows(anchors, cols) == expected  # the CPU is the default


@pytest.mark.parametrize("name", ["labels", "sample_ids", "refs", "views+labels"])
def test_tiled_gradient_across_several_chunks_equals_dense(name: str, monkeypatch) -> None:
    """Chunks of 4 rows (blocks.CHUNK_ROWS, normally 4096): the per-anchor and per-key
    gradient terms are formed chunk by chunk, each into its own rows; some anchors are
    singletons (no positive)."""
    from supcon import blocks

    embeddings, kwargs = BATCHES[name]
    kwargs = dict(kwargs)
    if "labels" in kwargs:
        kwargs["labels"] = kwargs["labels"].clone()
        kwargs["labels"][:3] = torch.tensor([90, 91, 92])  # three singletons
    dense_value, dense_grad = _value_and_grad(embeddings, tiled=False, **kwargs)
    monkeypatch.setattr(blocks, "CHUNK_ROWS", 4)
    tiled_value, tiled_grad = _value_and_grad(embeddings, tiled=True, block_size=5, **kwargs)
    assert tiled_value == pytest.approx(dense_value, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(tiled_grad, dense_grad, rtol=1e-9, atol=1e-12)
