"""CrossBatchMemory: FIFO order, filter, unlabelled rows, and the loss with a queue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import CrossBatchMemory, SupConLoss
from supcon.losses import supcon_loss
from tests.reference import pair_masks_from_labels, reference_supcon


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_fifo_keeps_the_newest_rows_normalised_and_detached() -> None:
    memory = CrossBatchMemory(size=5, dim=3)
    a, b = _rand(3, 3, seed=1).requires_grad_(), _rand(4, 3, seed=2)
    assert memory.enqueue(a, torch.tensor([0, 1, 2])) == 3
    assert len(memory) == 3
    memory.enqueue(b, torch.tensor([3, 4, 5, 6]))
    assert len(memory) == 5
    # Oldest two rows of `a` were overwritten: rows a[2], b[0..3] remain.
    expected = torch.cat([_unit(a.detach())[2:], _unit(b)])
    got = memory.embeddings[torch.argsort(memory.labels)]
    torch.testing.assert_close(got, expected)
    assert sorted(memory.labels.tolist()) == [2, 3, 4, 5, 6]
    assert not memory.embeddings.requires_grad


def test_batch_larger_than_the_queue_keeps_its_last_rows() -> None:
    memory = CrossBatchMemory(size=4, dim=2)
    memory.enqueue(_rand(10, 2), torch.arange(10))
    assert sorted(memory.labels.tolist()) == [6, 7, 8, 9]


def test_views_are_flattened_view_major_with_repeated_labels() -> None:
    memory = CrossBatchMemory(size=10, dim=4)
    emb = _rand(3, 2, 4, seed=3)
    memory.enqueue(emb, torch.tensor([7, 8, 9]))
    assert memory.labels.tolist() == [7, 8, 9, 7, 8, 9]
    torch.testing.assert_close(memory.embeddings[3:], _unit(emb[:, 1]))


def test_enqueue_filter_chooses_rows() -> None:
    memory = CrossBatchMemory(size=10, dim=2, enqueue_filter=lambda e, y: y % 2 == 0)
    assert memory.enqueue(_rand(6, 2), torch.arange(6)) == 3
    assert memory.labels.tolist() == [0, 2, 4]
    bad = CrossBatchMemory(size=10, dim=2, enqueue_filter=lambda e, y: y)
    with pytest.raises(ValueError, match="enqueue_filter must return"):
        bad.enqueue(_rand(6, 2), torch.arange(6))


def test_unlabelled_rows_are_negatives_only() -> None:
    memory = CrossBatchMemory(size=8, dim=4)
    memory.enqueue(_rand(4, 4, seed=4))
    memory.enqueue(_rand(2, 4, seed=5))
    labels = memory.labels
    assert len(set(labels.tolist())) == 6 and bool((labels < -(1 << 61)).all())
    # A view-grouped batch against the queue: the queue rows only enlarge the denominators.
    emb = _rand(5, 2, 4, seed=6).double()
    flat = torch.cat([emb[:, 0], emb[:, 1], memory.embeddings.double()]).numpy()
    ids = np.concatenate([np.tile(np.arange(5), 2), labels.numpy()])
    pos, keep = pair_masks_from_labels(ids)
    expected, _ = reference_supcon(flat, pos, keep, 0.1, num_anchors=10)
    got = supcon_loss(emb, **memory.as_refs())
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tiled", [False, True])
def test_loss_with_the_queue_matches_reference(tiled: bool) -> None:
    memory = CrossBatchMemory(size=32, dim=8, dtype=torch.float64)
    loss_fn = SupConLoss(0.1, tiled=tiled, block_size=7)
    for step in range(3):
        emb = _rand(12, 8, seed=10 + step).double().requires_grad_()
        labels = torch.arange(12) % 5
        queued = memory.embeddings.clone()
        queued_labels = memory.labels.clone()
        loss = loss_fn(emb, labels, **memory.as_refs())
        loss.backward()
        cands = torch.cat([emb.detach(), queued]).numpy()
        pos, keep = pair_masks_from_labels(np.concatenate([labels.numpy(), queued_labels.numpy()]))
        expected, _ = reference_supcon(cands, pos, keep, 0.1, num_anchors=12)
        assert loss.item() == pytest.approx(expected, rel=1e-10)
        assert torch.isfinite(emb.grad).all()
        memory.enqueue(emb, labels)  # after the loss: compute, then enqueue
    assert len(memory) == 32


def test_state_dict_round_trip_and_reset() -> None:
    memory = CrossBatchMemory(size=6, dim=3)
    memory.enqueue(_rand(4, 3), torch.arange(4))
    clone = CrossBatchMemory(size=6, dim=3)
    clone.load_state_dict(memory.state_dict())
    assert len(clone) == 4
    torch.testing.assert_close(clone.embeddings, memory.embeddings)
    clone.enqueue(_rand(4, 3, seed=1), torch.arange(4))
    assert len(clone) == 6
    clone.reset()
    assert len(clone) == 0 and clone.as_refs()["ref_embeddings"].shape == (0, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: CrossBatchMemory(0, 4), "size"),
        (lambda: CrossBatchMemory(4, -1), "dim"),
        (lambda: CrossBatchMemory(4, 4, enqueue_filter=3), "enqueue_filter"),
        (lambda: CrossBatchMemory(4, 4).enqueue(torch.randn(2, 5), torch.arange(2)), r"\(N, 4\)"),
        (lambda: CrossBatchMemory(4, 4).enqueue(torch.randn(2, 4), torch.arange(3)), "labels"),
        (
            lambda: CrossBatchMemory(4, 4).enqueue(torch.randn(2, 4), torch.ones(2, 3)),
            "multi-hot",
        ),
        (
            lambda: CrossBatchMemory(4, 2).enqueue(torch.tensor([[1.0, float("nan")]]), None),
            "NaN",
        ),
    ],
)
def test_bad_memory_input_raises(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
