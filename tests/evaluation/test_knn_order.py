"""Result order of the k-NN search: the (score, id) sort keys, and the deep-list partition
path where the cut falls inside a run of equal scores, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from supcon.evaluation import knn


def _brute(scores: np.ndarray, ids: np.ndarray) -> list[list[int]]:
    """Each row's ids by score descending, then id ascending, missing (-1) last."""
    out = []
    for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
        pairs = sorted(zip(row_scores, row_ids, strict=True), key=lambda p: (p[1] < 0, -p[0], p[1]))
        out.append([i for _, i in pairs])
    return out


@pytest.mark.parametrize(
    ("scores", "ids"),
    [
        ([[0.0, -0.0, 0.0]], [[2, 0, 1]]),  # -0.0 == 0.0: a tie, ordered by id
        ([[1e-9, 2e-9, 1.5e-9]], [[0, 2, 1]]),  # tiny but distinct
        ([[1.0, float(np.nextafter(np.float32(1), np.float32(2))), 1.0]], [[0, 3, 1]]),
        ([[-0.5, 0.25, -2.0, 3.0, -0.5]], [[4, 1, 2, 0, 3]]),  # both signs
        ([[0.5, 0.5, float("-inf"), 0.7]], [[3, 1, -1, 2]]),  # a missing neighbour
        ([[0.3, 0.3, 0.1]], [[5, 0, 2]]),  # a tie whose later id is 0
    ],
)
def test_order_keys_sort_by_score_then_id(scores: list, ids: list) -> None:
    s, i = np.array(scores, dtype=np.float32), np.array(ids, dtype=np.int64)
    order = np.argsort(knn._order_keys(s, i), axis=1, kind="stable")
    assert np.take_along_axis(i, order, axis=1).tolist() == _brute(s, i)
    # _sort_ties reorders only within runs of equal scores of a score-sorted row.
    by_score = np.argsort(-s, axis=1, kind="stable")
    s2, i2 = np.take_along_axis(s, by_score, axis=1), np.take_along_axis(i, by_score, axis=1)
    tied_scores, tied = knn._sort_ties(s2.copy(), i2.copy())
    assert tied.tolist() == _brute(s, i)
    assert tied_scores.tolist() == s2.tolist()  # scores were already sorted: unchanged


def _scored(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A query [1, 0] and a gallery whose scores against it are exactly ``row``."""
    gallery = np.stack([row, np.zeros_like(row)], axis=1).astype(np.float32)
    return np.array([[1.0, 0.0]], dtype=np.float32), gallery


@pytest.mark.parametrize(
    ("setup", "k"),
    [
        # One best, then a run of 298 equal scores: argpartition keeps id 95 of the run.
        ({7: 0.9, 250: 0.1}, 2),
        # Four best and a run of three 0.5s cut after two: argpartition keeps 3 and 290.
        ({**{i: 0.9 for i in (20, 40, 60, 80)}, **{i: 0.5 for i in (3, 150, 290)}}, 6),
    ],
)
def test_a_cut_inside_a_run_of_equal_scores_keeps_the_lowest_ids(
    setup: dict, k: int, monkeypatch
) -> None:
    base = 0.5 if k == 2 else 0.1
    row = np.full(300, base, dtype=np.float32)
    for i, value in setup.items():
        row[i] = value
    query, gallery = _scored(row)
    monkeypatch.setattr(knn, "HEAP_MAX_K", 1)  # the partition path
    scores, ids = knn.search_blocks(query, gallery, k)
    expected = sorted(range(300), key=lambda i: (-row[i], i))[:k]
    assert ids[0].tolist() == expected
    assert scores.dtype == np.float32 and scores[0].tolist() == row[expected].tolist()


def test_partition_path_pads_short_lists_and_skips_keys_only_in_pairs(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    query = rng.normal(size=(4, 3)).astype(np.float32)
    gallery = rng.normal(size=(6, 3)).astype(np.float32)
    monkeypatch.setattr(knn, "HEAP_MAX_K", 1)
    # k past the gallery: the tail is (-inf, -1), float32 / int64.
    scores, ids = knn.search_blocks(query, gallery, 9)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.isneginf(scores[:, 6:]).all() and (ids[:, 6:] == knn.NO_NEIGHBOUR).all()
    sims = query.astype(np.float64) @ gallery.astype(np.float64).T
    expected = np.argsort(-sims, axis=1, kind="stable")
    np.testing.assert_array_equal(ids[:, :6], expected)
    # Gallery keys without query keys exclude nothing (keys exclude pairs of equal keys).
    _, keyed = knn.search_blocks(query, gallery, 9, gallery_keys=np.arange(6) % 2)
    np.testing.assert_array_equal(keyed, ids)


@pytest.mark.parametrize("num_queries", [100, 256])
def test_two_threads_split_the_queries_exactly(num_queries: int) -> None:
    """With 2 torch threads, queries are split in ``len // 64``-row slices capped at 2."""
    import torch

    rng = np.random.default_rng(1)
    query = rng.normal(size=(num_queries, 5)).astype(np.float32)
    gallery = rng.normal(size=(90, 5)).astype(np.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _, ids = knn.search_blocks(query, gallery, 7, block_size=32)
        _, keyed = knn.search_blocks(query, gallery, 7, block_size=32, gallery_keys=np.arange(90))
    finally:
        torch.set_num_threads(old)
    sims = query.astype(np.float64) @ gallery.astype(np.float64).T
    np.testing.assert_array_equal(ids, np.argsort(-sims, axis=1, kind="stable")[:, :7])
    np.testing.assert_array_equal(keyed, ids)  # gallery keys alone exclude nothing


def test_leave_one_out_takes_a_lone_better_score_from_an_earlier_block() -> None:
    """Rows 4-7 sit on an arc 0.35-0.5 rad apart; row 0, 0.05 rad from row 4, is the only row of
    the first block closer to any of them than their own neighbours: in the (rows 0-3,
    rows 4-7) block exactly one score beats the columns' heaps."""
    angles = np.array([0.95, 3.5, 4.1, 4.8, 1.0, 1.45, 1.8, 2.3])
    x = np.stack([np.cos(angles), np.sin(angles), np.zeros(8)], axis=1).astype(np.float32)
    _, ids = knn.search_self(x, 1, block_size=4)
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    assert ids[:, 0].tolist() == np.argmax(sims, axis=1).tolist()
    assert ids[4, 0] == 0


def _loo_reference(x: np.ndarray, k: int, keys: np.ndarray | None) -> tuple[list, list]:
    """Leave-one-out neighbours by a full float64 sort; pairs of equal keys excluded."""
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    if keys is not None:
        sims[keys[:, None] == keys[None, :]] = -np.inf
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, ids, axis=1)
    return np.where(np.isinf(top), -1, ids).tolist(), np.isinf(top).tolist()


@pytest.mark.parametrize("ordered", [False, True])
def test_search_self_with_keys_order_and_a_one_row_last_block(ordered: bool) -> None:
    """9 rows in blocks of 4 (the last block holds one row); keys leave rows 0-2 fewer
    candidates than k, so their lists end in (-inf, -1)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    keys = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3])
    order = rng.permutation(9) if ordered else None
    scores, ids = knn.search_self(x, 5, keys=keys, order=order, block_size=4)
    expected_ids, missing = _loo_reference(x, 5, keys)
    assert ids.tolist() == expected_ids
    assert scores.dtype == np.float32
    assert (np.isneginf(scores) == np.array(missing)).all() and np.array(missing)[0].any()


@pytest.mark.parametrize("ordered", [False, True])
def test_search_self_chunks_partition_the_rows(ordered: bool) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    order = rng.permutation(10) if ordered else None
    whole = knn.search_self(x, 3, order=order, block_size=4)
    seen = []
    for rows, scores, ids in knn.search_self_chunks(x, 3, order=order, block_size=4, chunk_size=3):
        assert len(rows) == len(scores) == len(ids) <= 3
        np.testing.assert_array_equal(ids, whole[1][rows])
        np.testing.assert_array_equal(scores, whole[0][rows])
        seen += rows.tolist()
    assert seen == (order.tolist() if ordered else list(range(10)))


def test_symmetric_fits_at_its_two_limits(monkeypatch) -> None:
    """Heaps of n·k entries (12 bytes each) within the budget, and k no deeper than heaps go."""
    from supcon import blocks

    monkeypatch.setattr(blocks, "SYMMETRIC_BUDGET_BYTES", 12 * 1000)
    assert knn.symmetric_fits(100, 10) and knn.symmetric_fits(1000, 1)
    assert not knn.symmetric_fits(101, 10) and not knn.symmetric_fits(1001, 1)
    monkeypatch.setattr(blocks, "SYMMETRIC_BUDGET_BYTES", 1 << 40)
    assert knn.symmetric_fits(10, knn.HEAP_MAX_K)
    assert not knn.symmetric_fits(10, knn.HEAP_MAX_K + 1)
