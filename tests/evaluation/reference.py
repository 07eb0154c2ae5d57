"""Slow, obviously-correct references for retrieval metrics: full float64 similarity matrix,
a full stable sort per query and explicit loops."""

from __future__ import annotations

import numpy as np


def clustered(n: int, d: int, classes: int, noise: float, seed: int):
    """Gaussian blobs: ``(n, d)`` float32 embeddings and ``(n,)`` int labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    labels = rng.integers(0, classes, size=n)
    return (centers[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), labels


def ranked_lists(query, gallery, excluded):
    """Per query, gallery positions by decreasing float64 cosine, ties by position."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    return [
        [j for j in np.argsort(-sims[i], kind="stable") if not excluded[i, j]]
        for i in range(len(q))
    ]


def brute_force(
    query,
    q_labels,
    gallery=None,
    g_labels=None,
    *,
    ks=(1, 2, 4, 8),
    precision_ks=(1,),
    map_ks=(),
    q_sources=None,
    g_sources=None,
    per_class=False,
):
    """Reference metrics; leave-one-out when ``gallery`` is None (and sources exclude too)."""
    loo = gallery is None
    if loo:
        gallery, g_labels, g_sources = query, q_labels, q_sources
    excluded = np.zeros((len(query), len(gallery)), dtype=bool)
    if loo:
        np.fill_diagonal(excluded, True)
    if q_sources is not None:
        excluded |= np.asarray(q_sources)[:, None] == np.asarray(g_sources)[None, :]
    lists = ranked_lists(query, gallery, excluded)
    longest = max(len(order) for order in lists)
    out: dict = {}
    per_query = []
    for i, order in enumerate(lists):
        rel = np.array([g_labels[j] == q_labels[i] for j in order], dtype=bool)
        r = int(rel.sum())
        if r == 0:
            continue
        values = {}
        for k in ks:
            values[f"recall@{k}"] = float(rel[:k].any())
        for k in precision_ks:
            values[f"precision@{k}"] = rel[:k].sum() / min(k, longest)
        precision_at = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        for k in map_ks:
            values[f"map@{k}"] = (precision_at[:k] * rel[:k]).sum() / min(k, r)
        values["map@r"] = (precision_at[:r] * rel[:r]).sum() / r
        values["r_precision"] = rel[:r].sum() / r
        per_query.append((q_labels[i], values))
    for name in per_query[0][1]:
        out[name] = float(np.mean([v[name] for _, v in per_query]))
    out["num_queries"] = len(per_query)
    out["num_queries_without_positives"] = len(query) - len(per_query)
    if per_class:
        table = {}
        for label in sorted({lab for lab, _ in per_query}):
            rows = [v for lab, v in per_query if lab == label]
            table[label] = {name: float(np.mean([v[name] for v in rows])) for name in rows[0]}
            table[label]["num_queries"] = len(rows)
        out["per_class"] = table
    return out


def reference_nmi_ami(labels, assign) -> tuple[float, float]:
    """NMI and AMI (arithmetic-mean normalisation, natural log) from the contingency table.

    AMI = (MI − E[MI]) / (mean(H(U), H(V)) − E[MI]) with E[MI] under the hypergeometric model of
    Vinh, Epps & Bailey (2010), summed term by term with log-factorials.
    """
    from math import exp, lgamma, log

    labels, assign = np.asarray(labels), np.asarray(assign)
    n = len(labels)
    us, vs = np.unique(labels), np.unique(assign)
    table = np.array([[np.sum((labels == u) & (assign == v)) for v in vs] for u in us])
    a, b = table.sum(axis=1), table.sum(axis=0)

    def entropy(counts):
        return -sum(c / n * log(c / n) for c in counts if c)

    mi = sum(
        table[i, j] / n * log(n * table[i, j] / (a[i] * b[j]))
        for i in range(len(us))
        for j in range(len(vs))
        if table[i, j]
    )

    def lf(k):
        return lgamma(k + 1)

    emi = 0.0
    for ai in a:
        for bj in b:
            for nij in range(max(1, ai + bj - n), min(ai, bj) + 1):
                log_p = (
                    lf(ai) + lf(bj) + lf(n - ai) + lf(n - bj)
                    - lf(n) - lf(nij) - lf(ai - nij) - lf(bj - nij) - lf(n - ai - bj + nij)
                )  # fmt: skip
                emi += nij / n * log(n * nij / (ai * bj)) * exp(log_p)
    mean_h = (entropy(a) + entropy(b)) / 2
    return mi / mean_h, (mi - emi) / (mean_h - emi)


def assert_close(got: dict, expected: dict, *, same_keys: bool = False) -> None:
    """Every metric of ``expected`` (per class too) equals ``got``'s to 1e-12; with
    ``same_keys``, ``got`` has no other metric either."""
    import pytest

    if same_keys:
        assert set(got) == set(expected)
    for key, value in expected.items():
        if key == "per_class":
            assert set(got[key]) == set(value)
            for label, row in value.items():
                assert_close(got[key][label], row, same_keys=same_keys)
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key
