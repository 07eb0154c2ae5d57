"""Exact block-wise k-NN against a full sort, including exclusions and ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import blocks
from supcon.evaluation import knn


def reference(query, gallery, k, excluded=None):
    sims = query.astype(np.float64) @ gallery.astype(np.float64).T
    if excluded is not None:
        sims[excluded] = -np.inf
    ids = np.array([np.argsort(-row, kind="stable")[:k] for row in sims])
    ids = np.where(np.take_along_axis(sims, ids, axis=1) == -np.inf, -1, ids)
    return ids


def data(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("block", [16, 64, 1000])
@pytest.mark.parametrize("ordered", [False, True])
def test_search_self_matches_full_sort(block: int, ordered: bool) -> None:
    x = data(300, 8, 0)
    order = np.random.default_rng(1).permutation(300) if ordered else None
    scores, ids = knn.search_self(x, 20, order=order, block_size=block)
    excluded = np.eye(300, dtype=bool)
    np.testing.assert_array_equal(ids, reference(x, x, 20, excluded))
    expected = np.take_along_axis(x @ x.T, ids, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_search_self_with_keys_never_pairs_equal_keys() -> None:
    x = data(200, 6, 2)
    keys = np.arange(200) // 5
    _, ids = knn.search_self(x, 30, keys=keys, block_size=32)
    np.testing.assert_array_equal(ids, reference(x, x, 30, keys[:, None] == keys[None, :]))


def test_search_blocks_matches_full_sort_with_keys_and_short_lists() -> None:
    q, g = data(50, 8, 3), data(120, 8, 4)
    _, ids = knn.search_blocks(q, g, 15, block_size=32)
    np.testing.assert_array_equal(ids, reference(q, g, 15))
    qk, gk = np.arange(50) % 4, np.arange(120) % 4  # each query may see 90 items
    _, ids = knn.search_blocks(q, g, 100, query_keys=qk, gallery_keys=gk, block_size=32)
    np.testing.assert_array_equal(ids, reference(q, g, 100, qk[:, None] == gk[None, :]))
    assert (ids[:, 90:] == knn.NO_NEIGHBOUR).all()


def test_ties_are_ordered_by_position() -> None:
    # Small integer coordinates: every product is exact, so duplicates tie exactly.
    base = np.random.default_rng(5).integers(0, 3, size=(6, 4)).astype(np.float32)
    x = np.repeat(base, 4, axis=0)  # rows 4i..4i+3 are identical
    _, ids = knn.search_self(x, 23, block_size=8)
    np.testing.assert_array_equal(ids, reference(x, x, 23, np.eye(24, dtype=bool)))
    _, ids = knn.search_blocks(x[:5], x, 24, block_size=7)
    np.testing.assert_array_equal(ids, reference(x[:5], x, 24))


@pytest.mark.gpu
def test_cuda_search_matches_cpu() -> None:
    q, g = data(500, 16, 6), data(3000, 16, 7)
    keys_q, keys_g = np.arange(500) % 7, np.arange(3000) % 7
    cpu = knn.search_blocks(q, g, 50, query_keys=keys_q, gallery_keys=keys_g)
    gpu = knn.search_blocks(
        q, torch.from_numpy(g).cuda(), 50, query_keys=keys_q, gallery_keys=keys_g, device="cuda"
    )
    np.testing.assert_array_equal(cpu[1], gpu[1])
    base = np.random.default_rng(5).integers(0, 3, size=(6, 4)).astype(np.float32)
    x = np.repeat(base, 4, axis=0)  # exact ties; k = 11 cuts through a run of equal scores
    for k in (11, 24):
        cpu_ids = knn.search_blocks(x, x, k)[1]
        np.testing.assert_array_equal(knn.search_blocks(x, x, k, device="cuda")[1], cpu_ids)


def test_deep_lists_use_partitioning_and_match_the_heaps(monkeypatch: pytest.MonkeyPatch) -> None:
    q, g = data(40, 6, 8), data(300, 6, 9)
    keys_q, keys_g = np.arange(40) % 3, np.arange(300) % 3
    heaps = knn.search_blocks(q, g, 250, query_keys=keys_q, gallery_keys=keys_g)
    monkeypatch.setattr(knn, "HEAP_MAX_K", 10)
    monkeypatch.setattr(blocks, "PARTITION_ELEMENTS", 3000)  # 10 rows at a time
    deep = knn.search_blocks(q, g, 250, query_keys=keys_q, gallery_keys=keys_g)
    np.testing.assert_array_equal(deep[1], heaps[1])
    np.testing.assert_allclose(deep[0], heaps[0], rtol=1e-5, atol=1e-5)
    assert (deep[1][:, 200:] == knn.NO_NEIGHBOUR).all()  # 200 candidates, then none
    np.testing.assert_array_equal(deep[1], reference(q, g, 250, keys_q[:, None] == keys_g))
    base = np.random.default_rng(5).integers(0, 3, size=(6, 4)).astype(np.float32)
    x = np.repeat(base, 4, axis=0)  # exact ties are ordered by position here too
    for k in (11, 24):  # 11 cuts through a run of 4 equal scores
        np.testing.assert_array_equal(knn.search_blocks(x, x, k)[1], reference(x, x, k))
