"""α-query expansion, database-side augmentation and exact re-ranking against slow references."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from supcon.evaluation.index import IndexParams, SearchIndex, build_index
from supcon.evaluation.postprocess import (
    database_augmentation,
    postprocessed_metrics,
    query_expansion,
)


def _clustered(n: int, dim: int, classes: int, seed: int, noise: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = centres[rng.integers(0, classes, n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _reference_expand(q, g, n, alpha, exclude=None):
    """Float64 loops: q' ∝ q + Σ_{top n by cosine, not excluded} max(s, 0)^α g."""
    q, g = q.astype(np.float64), g.astype(np.float64)
    out = np.empty_like(q)
    for i, query in enumerate(q):
        sims = g @ query
        order = [j for j in np.argsort(-sims, kind="stable") if exclude is None or j != exclude[i]]
        total = query.copy()
        for j in order[:n]:
            total += max(sims[j], 0.0) ** alpha * g[j]
        out[i] = total / np.linalg.norm(total)
    return out


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_query_expansion_matches_the_loop_reference(alpha: float) -> None:
    gallery = _clustered(120, 12, 6, seed=0)
    query = _clustered(15, 12, 6, seed=1)
    got = query_expansion(query, gallery, 5, alpha)
    np.testing.assert_allclose(got, _reference_expand(query, gallery, 5, alpha), atol=1e-5)
    assert not np.allclose(got, query, atol=1e-3)  # it did change the queries


def test_query_expansion_leave_one_out_skips_the_query_itself() -> None:
    x = _clustered(80, 8, 4, seed=2)
    got = query_expansion(x, x, 4, 3.0, exclude=np.arange(80))
    np.testing.assert_allclose(got, _reference_expand(x, x, 4, 3.0, np.arange(80)), atol=1e-5)


def test_database_augmentation_matches_the_loop_reference() -> None:
    g = _clustered(100, 10, 5, seed=3)
    got = database_augmentation(g, 3, 3.0)
    np.testing.assert_allclose(got, _reference_expand(g, g, 3, 3.0, np.arange(100)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_expansion_sizes_and_alpha_are_checked() -> None:
    g = _clustered(10, 4, 2, seed=4)
    with pytest.raises(ValueError, match="at most 10"):
        query_expansion(g[:2], g, 11)
    with pytest.raises(ValueError, match="at most 9"):
        database_augmentation(g, 10)
    with pytest.raises(ValueError, match="alpha"):
        query_expansion(g[:2], g, 2, alpha=-1.0)


def _exact_topk(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q.astype(np.float64) @ g.T.astype(np.float64)), axis=1)[:, :k]


def test_refine_rescores_the_ivfpq_shortlist_exactly() -> None:
    g, q = _clustered(1200, 16, 30, seed=5), _clustered(40, 16, 30, seed=6)
    ids = np.arange(1200) * 7 + 3  # ids are not rows
    params = IndexParams("ivfpq", nlist=8, nprobe=8, pq_m=4, store_exact=True)
    index = build_index(g, ids=ids, params=params)
    k, shortlist = 10, 50
    scores, got = index.search(q, k, refine=shortlist)
    # Reference: the PQ shortlist (row numbers), re-scored in float64, best k kept.
    base = faiss.downcast_index(faiss.downcast_index(index.index.index).base_index)
    _, rows = base.search(q, shortlist)
    exact = np.einsum("qd,qkd->qk", q.astype(np.float64), g[rows].astype(np.float64))
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(got, ids[np.take_along_axis(rows, order, axis=1)])
    np.testing.assert_allclose(scores, np.take_along_axis(exact, order, axis=1), atol=1e-5)

    truth = ids[_exact_topk(q, g, k)]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)]))

    _, plain = index.search(q, k)  # IndexRefineFlat with k_factor 1: k candidates re-scored
    assert recall(got) > recall(plain) and recall(got) >= 0.9


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_refine_on_exact_storage_returns_exact_scores(kind: str) -> None:
    g, q = _clustered(800, 16, 10, seed=7), _clustered(20, 16, 10, seed=8)
    index = build_index(g, params=IndexParams(kind, nlist=8, nprobe=2, ef_search=16))
    scores, ids = index.search(q, 5, refine=40)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, g[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_refine_is_refused_where_it_cannot_apply(tmp_path) -> None:
    g = _clustered(400, 16, 8, seed=9)
    with pytest.raises(ValueError, match="already exact"):
        build_index(g).search(g[:2], 3, refine=10)
    plain = build_index(g, params=IndexParams("ivfpq", nlist=4, pq_m=4))
    with pytest.raises(ValueError, match="--store-exact"):
        plain.search(g[:2], 3, refine=10)
    stored = build_index(g, params=IndexParams("ivfpq", nlist=4, pq_m=4, store_exact=True))
    loaded = SearchIndex.load(stored.save(tmp_path / "s.faiss"))
    assert loaded.params.store_exact
    np.testing.assert_array_equal(
        loaded.search(g[:3], 4, refine=20)[1], stored.search(g[:3], 4, refine=20)[1]
    )


def _brute_metrics(q, q_labels, q_rows, g, g_labels, g_rows) -> tuple[float, float]:
    """Recall@1 and MAP@R by loops; an item never retrieves itself (same row)."""
    recalls, maps = [], []
    for i, query in enumerate(q.astype(np.float64)):
        keep = g_rows != q_rows[i]
        sims, labs = g[keep].astype(np.float64) @ query, g_labels[keep]
        rel = labs[np.argsort(-sims, kind="stable")] == q_labels[i]
        r = int(rel.sum())
        if r == 0:
            continue
        recalls.append(float(rel[0]))
        hits = np.cumsum(rel[:r])
        maps.append(float(np.sum(rel[:r] * hits / np.arange(1, r + 1)) / r))
    return float(np.mean(recalls)), float(np.mean(maps))


@pytest.mark.parametrize("flags", [False, True])
def test_postprocessed_metrics_match_a_brute_force_reference(flags: bool) -> None:
    x = _clustered(90, 8, 6, seed=10, noise=0.6)
    labels = np.random.default_rng(10).integers(0, 6, 90)
    labels[:45] = np.argmax(x[:45] @ x[:6].T, axis=1)  # some structure, some noise
    is_query = np.arange(90) % 3 == 0 if flags else None
    is_gallery = np.arange(90) % 3 != 1 if flags else None
    q_rows = np.flatnonzero(is_query) if flags else np.arange(90)
    g_rows = np.flatnonzero(is_gallery) if flags else np.arange(90)
    metrics = postprocessed_metrics(
        x, labels, qe=3, qe_alpha=2.0, dba=2, dba_alpha=1.0,
        is_query=is_query, is_gallery=is_gallery, ks=(1,),
    )  # fmt: skip
    gallery = _reference_expand(x[g_rows], x[g_rows], 2, 1.0, np.arange(len(g_rows)))
    position = {row: i for i, row in enumerate(g_rows)}
    exclude = np.array([position.get(row, -1) for row in q_rows])
    query = _reference_expand(x[q_rows], gallery, 3, 2.0, exclude)
    recall, map_r = _brute_metrics(query, labels[q_rows], q_rows, gallery, labels[g_rows], g_rows)
    assert metrics["recall@1"] == pytest.approx(recall, abs=1e-9)
    assert metrics["map@r"] == pytest.approx(map_r, abs=1e-6)


@pytest.mark.parametrize("flags", [False, True])
def test_approximate_recall_of_an_exhaustive_index_is_the_exact_recall(flags: bool) -> None:
    from supcon.evaluation import retrieval_metrics
    from supcon.evaluation.postprocess import approximate_recall

    x = _clustered(300, 8, 10, seed=11, noise=0.8)
    labels = np.random.default_rng(11).integers(0, 10, 300)
    labels[:150] = np.argmax(x[:150] @ x[:10].T, axis=1)
    is_query = np.arange(300) % 4 == 0 if flags else None
    is_gallery = np.arange(300) % 4 != 1 if flags else None
    exact = retrieval_metrics(x, labels, ks=(1, 4), is_query=is_query, is_gallery=is_gallery)
    params = IndexParams("ivf", nlist=4, nprobe=4)  # every cell probed: exhaustive
    got = approximate_recall(x, labels, params, ks=(1, 4), is_query=is_query, is_gallery=is_gallery)
    assert got["recall@1"] == pytest.approx(exact["recall@1"])
    assert got["recall@4"] == pytest.approx(exact["recall@4"])
    assert got["recall@4_vs_exact"] == pytest.approx(1.0)
    assert got["num_queries"] == exact["num_queries"]
    narrow = approximate_recall(x, labels, IndexParams("ivf", nlist=8, nprobe=1), ks=(1, 4))
    assert narrow["recall@4_vs_exact"] < 1.0  # one cell of eight misses true neighbours
