"""The CUDA search's block loop (device-agnostic torch code) run on CPU tensors.

CI has no GPU, so ``_search_cuda`` is called directly with ``device=cpu``: the blocks, the key
masking, the tie order, short lists and the TF32 switch are checked against a float64 full
sort; ``tests/evaluation/test_knn.py::test_cuda_search_matches_cpu`` runs it on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import blocks
from supcon.evaluation import knn

CPU = torch.device("cpu")


def _reference(query: np.ndarray, gallery: np.ndarray, k: int, excluded=None):
    """(scores, ids): float64 products, score descending then position; -inf, -1 past the end."""
    sims = query.astype(np.float64) @ gallery.astype(np.float64).T
    if excluded is not None:
        sims[excluded] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(sims, order, axis=1)
    ids = np.where(scores == -np.inf, knn.NO_NEIGHBOUR, order)
    pad = k - ids.shape[1]
    scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=knn.NO_NEIGHBOUR)
    return scores, ids


def _data(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """7 query rows per block against a 60-row gallery (several blocks, a ragged last one)."""
    monkeypatch.setattr(blocks, "CUDA_BLOCK_ELEMENTS", 7 * 60)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("as_tensor", [False, True])
def test_blocks_match_a_full_sort(as_tensor: bool) -> None:
    q, g = _data(45, 8, 0), _data(60, 8, 1)
    args = (torch.from_numpy(q), torch.from_numpy(g)) if as_tensor else (q, g)
    scores, ids = knn._search_cuda(*args, 12, None, None, CPU)
    ref_scores, ref_ids = _reference(q, g, 12)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert scores.shape == ids.shape == (45, 12)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("as_tensor", [False, True])
def test_keys_hide_equal_keys_and_short_lists_end_in_no_neighbour(as_tensor: bool) -> None:
    q, g = _data(45, 8, 2), _data(60, 8, 3)
    qk, gk = np.arange(45) % 4, np.arange(60) % 4  # 45 visible items per query
    keys = (torch.from_numpy(qk), torch.from_numpy(gk)) if as_tensor else (qk, gk)
    scores, ids = knn._search_cuda(q, g, 50, *keys, CPU)
    ref_scores, ref_ids = _reference(q, g, 50, qk[:, None] == gk[None, :])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert (ids[:, 45:] == knn.NO_NEIGHBOUR).all() and np.isneginf(scores[:, 45:]).all()


@pytest.mark.usefixtures("small_blocks")
def test_k_past_the_gallery_pads_every_row() -> None:
    q, g = _data(10, 4, 4), _data(60, 4, 5)
    scores, ids = knn._search_cuda(q, g, 64, None, None, CPU)
    ref_scores, ref_ids = _reference(q, g, 64)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert (ids[:, 60:] == knn.NO_NEIGHBOUR).all()


def test_exact_ties_come_out_by_gallery_position(monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.random.default_rng(5).integers(0, 3, size=(6, 4)).astype(np.float32)
    x = np.repeat(base, 4, axis=0)  # rows 4i..4i+3 identical: products tie exactly
    monkeypatch.setattr(blocks, "CUDA_BLOCK_ELEMENTS", 5 * 24)
    for k in (7, 11, 24):  # cuts through runs of equal scores
        scores, ids = knn._search_cuda(x, x, k, None, None, CPU)
        ref_scores, ref_ids = _reference(x, x, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_tf32_is_off_during_the_products_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    mask_keys = knn._mask_keys

    def spy(block, row_keys, col_keys):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return mask_keys(block, row_keys, col_keys)

    monkeypatch.setattr(knn, "_mask_keys", spy)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        knn._search_cuda(_data(5, 3, 6), _data(8, 3, 7), 2, None, None, CPU)
        assert seen == [False]
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("tied_rows", [1, 6])
def test_rows_tied_across_the_whole_gallery_keep_the_lowest_ids(tied_rows: int) -> None:
    """A zero query scores 0 against every gallery row: its top-k are rows 0..k-1. One such
    row among untied ones, or every row of the block."""
    q = _data(6, 5, 8)
    q[:tied_rows] = 0.0
    g = _data(24, 5, 9)
    scores, ids = knn._search_cuda(q, g, 5, None, None, CPU)
    ref_scores, ref_ids = _reference(q, g, 5)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(ids[:tied_rows], np.tile(np.arange(5), (tied_rows, 1)))
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
