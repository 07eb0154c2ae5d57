"""The loss's reduction under ``gather_distributed``: two ranks simulated in one process.

Each rank sums the losses of its own anchors, all-reduces the anchor counts and that sum, and
returns the global mean, with a gradient that — summed over ranks by the gather's backward and
averaged by DDP — is the gradient of the whole batch's loss. The two-process tests cover this
end to end but are slow (and outside the fast selection the mutation run uses); here the gather
hands each "rank" the whole batch (rows of one leaf tensor) at its offset, and
``all_reduce_sum`` adds the other rank's recorded contribution, so the reduction is checked
against the float64 reference of the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

import supcon.losses.functional as functional
import supcon.losses.gather as gather
import supcon.losses.inputs as inputs
from supcon.losses import supcon_loss_with_stats
from supcon.losses.rows import LocalRows
from tests.reference import numerical_gradient, pair_masks_from_labels, reference_supcon

TAU, D = 0.3, 4
# Rank 0 holds rows 0-4, rank 1 rows 5-10; class 2 spans both ranks, 7 and 9 are singletons.
LABELS = torch.tensor([0, 0, 2, 7, 1, 1, 2, 3, 3, 9, 2])
SIZES = (5, 6)
OFFSETS = (0, 5)


def _losses(x: torch.Tensor, path: str, monkeypatch) -> list[tuple[torch.Tensor, object]]:
    """Each rank's ``(loss, stats)``, computed with the other rank's all-reduced contribution."""
    monkeypatch.setattr(functional, "get_world_size", lambda: 2)
    recorded: list[list[torch.Tensor]] = [[], []]

    def run(rank: int, reduce) -> tuple[torch.Tensor, object]:
        offset, size = OFFSETS[rank], SIZES[rank]

        def whole_batch(rows: LocalRows) -> tuple[LocalRows, int, bool]:
            flat = torch.cat([x[:offset], rows.flat, x[offset + size :]])
            keys = torch.cat([LABELS[:offset], rows.keys, LABELS[offset + size :]])
            return replace(rows, flat=flat, keys=keys), offset, True

        monkeypatch.setattr(gather, "gather_rows", whole_batch)
        monkeypatch.setattr(inputs, "gather_rows", whole_batch, raising=False)
        monkeypatch.setattr(functional, "all_reduce_sum", reduce)
        local = x[offset : offset + size]
        return supcon_loss_with_stats(
            local,
            LABELS[offset : offset + size],
            temperature=TAU,
            path=path,
            block_size=3,
            gather_distributed=True,
        )

    for rank in (0, 1):  # first pass: what each rank contributes to each all-reduce

        def record(t: torch.Tensor, rank: int = rank) -> torch.Tensor:
            recorded[rank].append(t.detach().clone())
            return t

        run(rank, record)
    assert [len(r) for r in recorded] == [2, 2]  # the counts, then the loss sum

    out = []
    for rank in (0, 1):
        calls = iter(range(2))

        def summed(t: torch.Tensor, rank: int = rank, calls: Iterator[int] = calls) -> torch.Tensor:
            i = next(calls)
            torch.testing.assert_close(t.detach(), recorded[rank][i], rtol=0, atol=0)
            return t.detach() + recorded[1 - rank][i]

        out.append(run(rank, summed))
    return out


@pytest.mark.parametrize("path", ["dense", "tiled"])
def test_two_ranks_reduce_to_the_whole_batch_loss_and_gradient(path: str, monkeypatch) -> None:
    pos, keep = pair_masks_from_labels(LABELS.numpy())

    def reference(z: np.ndarray) -> float:
        return reference_supcon(z, pos, keep, TAU)[0]

    x0 = torch.randn(len(LABELS), D, generator=torch.Generator().manual_seed(0)).double()
    expected = reference(x0.numpy())
    without = reference_supcon(x0.numpy(), pos, keep, TAU)[1]
    expected_grad = numerical_gradient(reference, x0.numpy())
    x = x0.clone().requires_grad_()
    (loss0, stats0), (loss1, stats1) = _losses(x, path, monkeypatch)
    for loss, stats in ((loss0, stats0), (loss1, stats1)):
        assert loss.item() == pytest.approx(expected, rel=1e-10)  # every rank: the global mean
        assert stats.path == path
        assert stats.num_anchors == len(LABELS)  # counts summed over both ranks
        assert stats.num_anchors_without_positives == without == 2
    # The gather's backward sums each row's gradient over ranks; DDP then divides by 2.
    ((loss0 + loss1) / 2).backward()
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, atol=2e-7)
