"""Anchors that do not start at candidate 0: every path against the float64 reference.

Under ``gather_distributed`` a rank's anchors sit at its offset in the gathered rows, so anchor
``r`` is candidate ``offset + r``: its self-similarity, its key range and its mined pairs are all
shifted. The two-process tests (``test_distributed.py``) cover this end to end but are slow;
here the gather is replaced by one that puts a fixed "rank 0" block in front of this process's
rows (``distributed=False``, so no collective and no DDP scaling), and the loss of the local
anchors is compared on value and gradient with :func:`tests.reference.reference_supcon` /
:func:`tests.reference.reference_hcl` over the reordered candidates (anchors first).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import supcon.losses.gather as gather
import supcon.losses.inputs as inputs
from supcon.losses import supcon_loss_with_stats
from supcon.losses.rows import LocalRows
from tests.reference import (
    numerical_gradient,
    pair_masks_from_indices,
    pair_masks_from_labels,
    reference_hcl,
    reference_supcon,
)

TAU, N, K, D = 0.25, 9, 7, 3  # local anchors, rows in front of them (the offset), dimension
# Local rows 6 and 8 are singletons (no positive); local class 0 also occurs in front.
LOCAL = torch.tensor([0, 0, 1, 1, 2, 2, 5, 3, 6])
FRONT = torch.tensor([0, 3, 4, 4, 1, 7, 7])


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


FRONT_ROWS = _rand(K, D, seed=1)
FRONT_HOT = torch.rand(K, 3, generator=torch.Generator().manual_seed(2)) < 0.4


def _front_gather(rows: LocalRows) -> tuple[LocalRows, int, bool]:
    """The gathered batch of rank 1 of 2, rank 0 holding ``FRONT_ROWS``."""
    keys, hot = rows.keys, rows.multi_hot
    if keys is not None:
        keys = torch.cat([FRONT, keys])
    if hot is not None:
        hot = torch.cat([FRONT_HOT, hot])
    flat = torch.cat([FRONT_ROWS.to(rows.flat.dtype), rows.flat])
    return replace(rows, flat=flat, keys=keys, multi_hot=hot), K, False


def _to_reference_order(index: np.ndarray) -> np.ndarray:
    """Gathered candidate index -> index in ``[local, front, refs]`` (anchors first)."""
    return np.where(index < K, index + N, np.where(index < K + N, index - K, index))


def _pairs() -> tuple[torch.Tensor, ...]:
    """Mined pairs over the gathered batch, anchors in ``[K, K + N)``, some self-pairs."""
    gen = torch.Generator().manual_seed(3)
    a1 = torch.cat([torch.randint(K + 2, K + N, (12,), generator=gen), torch.tensor([K + 1])])
    p = torch.cat([torch.randint(0, K + N, (12,), generator=gen), torch.tensor([K + 1])])
    a2 = torch.cat([torch.randint(K + 2, K + N, (20,), generator=gen), torch.tensor([K, K])])
    n = torch.cat([torch.randint(0, K + N, (20,), generator=gen), torch.tensor([0, 2])])
    return a1, p, a2, n  # row K: only negatives; row K + 1: only itself, i.e. nothing


CASES = {
    "labels": ({"labels": LOCAL}, 0.0, ("dense", "tiled")),
    "multi_hot": (
        {"labels": torch.rand(N, 3, generator=torch.Generator().manual_seed(4)) < 0.4},
        0.0,
        ("dense", "tiled"),
    ),
    "hcl": ({"labels": LOCAL, "hcl_beta": 0.8}, 0.8, ("dense", "tiled")),
    "refs": (
        {
            "labels": LOCAL,
            "ref_embeddings": _rand(4, D, seed=5),
            "ref_labels": torch.tensor([1, 4, 9, 6]),
        },
        0.0,
        ("dense", "tiled"),
    ),
    "pairs": ({"indices_tuple": _pairs()}, 0.0, ("dense", "tiled", "sparse")),
}


def _masks(kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(N, M)`` positives and denominator over the reordered candidates."""
    if "indices_tuple" in kwargs:
        parts = [t.numpy() for t in kwargs["indices_tuple"]]
        a1, p, a2, n = (_to_reference_order(t) for t in parts)
        pos, keep = pair_masks_from_indices((a1, p, a2, n), K + N)
        return pos[:N], keep[:N]
    labels = kwargs["labels"].numpy()
    front = FRONT_HOT.numpy() if labels.dtype == bool else FRONT.numpy()
    every = np.concatenate([labels, front])
    if "ref_labels" in kwargs:
        every = np.concatenate([every, kwargs["ref_labels"].numpy()])
    pos, keep = pair_masks_from_labels(every)
    return pos[:N], keep[:N]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_path_at_an_anchor_offset_matches_the_reference(name: str, monkeypatch) -> None:
    kwargs, beta, paths = CASES[name]
    monkeypatch.setattr(gather, "gather_rows", _front_gather)
    monkeypatch.setattr(inputs, "gather_rows", _front_gather, raising=False)  # imported there
    pos, keep = _masks(kwargs)
    refs = kwargs.get("ref_embeddings")
    after = FRONT_ROWS.numpy() if refs is None else np.concatenate([FRONT_ROWS, refs])

    def reference(local: np.ndarray) -> float:
        x = np.concatenate([local, after])
        if beta:
            return reference_hcl(x, pos, keep, TAU, beta, N)
        return reference_supcon(x, pos, keep, TAU, N)[0]

    local = _rand(N, D, seed=6)
    expected = reference(local.numpy())
    expected_grad = numerical_gradient(reference, local.numpy())
    without = reference_supcon(np.concatenate([local, after]), pos, keep, TAU, N)[1]
    assert without >= 1 and expected > 0
    for path in paths:
        emb = local.clone().requires_grad_()
        loss, stats = supcon_loss_with_stats(
            emb, temperature=TAU, path=path, block_size=4, gather_distributed=True, **kwargs
        )
        loss.backward()
        assert stats.path == path
        assert stats.num_anchors_without_positives == without, stats.path
        assert loss.item() == pytest.approx(expected, rel=1e-10), stats.path
        np.testing.assert_allclose(emb.grad.numpy(), expected_grad, atol=2e-7, err_msg=stats.path)
