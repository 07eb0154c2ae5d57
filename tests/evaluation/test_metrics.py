"""retrieval_metrics against a brute-force numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import retrieval_metrics


def brute_force(query, q_labels, gallery=None, g_labels=None, ks=(1, 2, 4, 8)):
    """Full similarity matrix, full argsort, explicit per-query loops."""
    loo = gallery is None
    if loo:
        gallery, g_labels = query, q_labels
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    out = {f"recall@{k}": [] for k in ks} | {"precision@1": [], "map@r": [], "r_precision": []}
    for i in range(len(q)):
        order = [j for j in np.argsort(-sims[i], kind="stable") if not (loo and j == i)]
        rel = np.array([g_labels[j] == q_labels[i] for j in order])
        r = int(rel.sum())
        if r == 0:
            continue
        for k in ks:
            out[f"recall@{k}"].append(rel[:k].any())
        out["precision@1"].append(rel[0])
        out["r_precision"].append(rel[:r].sum() / r)
        ap = sum(rel[: j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r
        out["map@r"].append(ap)
    return {k: float(np.mean(v)) for k, v in out.items()}


def clustered(n, d, classes, noise, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    labels = rng.integers(0, classes, size=n)
    return (centers[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.mark.parametrize("noise", [0.3, 1.0, 3.0])
def test_leave_one_out_matches_brute_force(noise: float) -> None:
    emb, labels = clustered(300, 16, 7, noise, seed=int(noise * 10))
    got = retrieval_metrics(emb, labels, chunk_size=64)
    expected = brute_force(emb, labels)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["num_queries"] == 300


def test_query_gallery_matches_brute_force_and_skips_unmatched_queries() -> None:
    q, ql = clustered(120, 8, 6, 1.0, seed=1)
    g, gl = clustered(200, 8, 5, 1.0, seed=1)  # class 5 absent from the gallery
    got = retrieval_metrics(q, ql, g, gl, ks=(1, 3, 10))
    expected = brute_force(q, ql, g, gl, ks=(1, 3, 10))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["num_queries_without_positives"] == int((ql == 5).sum())


def test_accepts_torch_tensors_and_is_scale_invariant() -> None:
    emb, labels = clustered(100, 8, 4, 1.0, seed=2)
    a = retrieval_metrics(torch.from_numpy(emb), torch.from_numpy(labels))
    b = retrieval_metrics(emb * 7.5, labels)
    assert a == b


def test_perfect_and_random_embeddings() -> None:
    labels = np.repeat(np.arange(10), 20)
    perfect = np.eye(10, dtype=np.float32)[labels] + 1e-3 * np.random.default_rng(0).normal(
        size=(200, 10)
    ).astype(np.float32)
    m = retrieval_metrics(perfect, labels)
    assert m["recall@1"] == 1.0 and m["map@r"] == pytest.approx(1.0)
    rand = np.random.default_rng(0).normal(size=(200, 32)).astype(np.float32)
    assert retrieval_metrics(rand, labels)["precision@1"] < 0.3


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((0, 4)), np.zeros(0)), {}, "non-empty"),
        ((np.ones((4, 4)), np.zeros(3)), {}, r"query_labels must be \(4,\)"),
        ((np.array([[np.nan, 1.0], [1.0, 1.0]]), np.zeros(2)), {}, "1 row"),
        ((np.ones((4, 4)), np.zeros(4), np.ones((3, 5)), np.zeros(3)), {}, "dimension"),
        ((np.ones((4, 4)), np.zeros(4), np.ones((3, 4))), {}, "gallery_labels"),
        ((np.ones((4, 4)), np.zeros(4)), {"ks": (0,)}, "ks"),
        ((np.ones((4, 4)), np.arange(4)), {}, "no query label"),
    ],
)
def test_bad_input(args, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(*args, **kwargs)
