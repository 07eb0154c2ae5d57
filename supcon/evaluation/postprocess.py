"""Retrieval post-processing on unit embeddings: α-query expansion and database-side augmentation.

Both replace a vector by a weighted mean of itself and its nearest gallery neighbours, then
re-normalise (Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human
annotation", TPAMI 2018, §5.1):

* **αQE** (query side): ``q' ∝ q + Σ_{i≤n} max(s_i, 0)^α · g_i``, with ``g_1..g_n`` the query's
  ``n`` nearest gallery items and ``s_i`` their cosine similarities. ``α = 0`` is average
  query expansion (Chum et al. 2007); larger ``α`` trusts close neighbours more.
* **DBA** (database side): every gallery item ``g`` becomes ``g' ∝ g + Σ_{i≤n} max(s_i,0)^α ·
  g_i`` over its ``n`` nearest *other* gallery items, computed once, offline.

Neighbours come from exact inner-product search (FAISS ``IndexFlatIP``). When queries are
themselves gallery items (leave-one-out), pass ``exclude`` so a query never expands with itself.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import torch

from supcon.evaluation.unit import unit_rows

ArrayLike = np.ndarray | torch.Tensor


def _check(n: int, alpha: float, available: int, what: str) -> None:
    if n < 1:
        raise ValueError(f"the number of {what} neighbours must be ≥ 1, got {n}")
    if n > available:
        raise ValueError(
            f"{what} with {n} neighbours needs a gallery of more than {n} items, but only "
            f"{available} can be used; lower it to at most {available}"
        )
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number ≥ 0, got {alpha}")


def _neighbours(
    query: np.ndarray, gallery: np.ndarray, n: int, exclude: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` gallery rows per query by inner product, skipping ``exclude[i]`` for query i."""
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    depth = n + (exclude is not None)
    scores, rows = index.search(query, depth)
    if exclude is None:
        return scores, rows
    keep = rows != np.asarray(exclude, dtype=np.int64)[:, None]
    # Drop the excluded row where it appears, else the last one: n columns remain per query.
    keep[keep.all(axis=1), -1] = False
    return scores[keep].reshape(len(query), n), rows[keep].reshape(len(query), n)


def expand(
    base: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, alpha: float
) -> np.ndarray:
    """``normalise(base + Σ_i max(s_i, 0)^α · neighbour_i)``, row by row.

    Args:
        base: ``(N, D)`` unit vectors.
        neighbours: ``(N, n, D)`` their neighbours' vectors.
        scores: ``(N, n)`` cosine similarities of ``base`` to each neighbour.
        alpha: Weight exponent ``α ≥ 0`` (``0**0 = 1``: average expansion at ``α = 0``).

    Returns:
        ``(N, D)`` float32 unit vectors.
    """
    weights = np.maximum(scores, 0.0).astype(np.float32) ** np.float32(alpha)
    out = base + np.einsum("qn,qnd->qd", weights, neighbours)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def query_expansion(
    query: ArrayLike,
    gallery: ArrayLike,
    n: int,
    alpha: float = 3.0,
    *,
    exclude: ArrayLike | None = None,
) -> np.ndarray:
    """α-query expansion: each query becomes the weighted mean of itself and its top-``n``.

    Args:
        query: ``(Nq, D)`` query embeddings (L2-normalised here).
        gallery: ``(Ng, D)`` gallery embeddings (L2-normalised here), possibly already
            augmented by :func:`database_augmentation`.
        n: Neighbours to expand with (``1 ≤ n < Ng`` with ``exclude``, ``≤ Ng`` without).
        alpha: Weight exponent ``α ≥ 0`` (Radenović et al. use 3).
        exclude: ``(Nq,)`` gallery row that query ``i`` must not use (itself, in
            leave-one-out), or ``None``.

    Returns:
        ``(Nq, D)`` float32 unit vectors.

    Raises:
        ValueError: for bad shapes, ``n`` out of range or ``alpha < 0``.
    """
    q, g = unit_rows(query, "query"), unit_rows(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]}, gallery {g.shape[1]}")
    _check(n, alpha, len(g) - (exclude is not None), "query expansion")
    scores, rows = _neighbours(q, g, n, None if exclude is None else np.asarray(exclude))
    return expand(q, g[rows], scores, alpha)


def database_augmentation(gallery: ArrayLike, n: int, alpha: float = 3.0) -> np.ndarray:
    """Database-side augmentation: each gallery item becomes the weighted mean of itself and
    its ``n`` nearest other gallery items.

    Args:
        gallery: ``(Ng, D)`` embeddings (L2-normalised here).
        n: Neighbours per item (``1 ≤ n < Ng``).
        alpha: Weight exponent ``α ≥ 0``.

    Returns:
        ``(Ng, D)`` float32 unit vectors.

    Raises:
        ValueError: for bad shapes, ``n`` out of range or ``alpha < 0``.
    """
    g = unit_rows(gallery, "gallery")
    _check(n, alpha, len(g) - 1, "database augmentation")
    scores, rows = _neighbours(g, g, n, np.arange(len(g)))
    return expand(g, g[rows], scores, alpha)


def postprocessed_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    qe: int | None = None,
    qe_alpha: float = 3.0,
    dba: int | None = None,
    dba_alpha: float = 3.0,
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
    **metric_args: Any,
) -> dict[str, Any]:
    """:func:`~supcon.evaluation.retrieval_metrics` of one labelled set after DBA and/or αQE.

    The gallery (``is_gallery`` rows, default all) is augmented first (DBA), then the queries
    (``is_query`` rows, default all) are expanded against it (αQE, never with themselves);
    metrics follow with every item barred from retrieving itself, as in leave-one-out. Without
    ``qe`` and ``dba`` the result equals ``retrieval_metrics(embeddings, labels, …)``. In
    leave-one-out a query's neighbours were augmented with the query itself (DBA): use
    separate query and gallery items for a clean measurement.

    Args:
        embeddings: ``(N, D)``.
        labels: ``(N,)``.
        qe: αQE neighbours (``None``: no expansion).
        qe_alpha: αQE exponent.
        dba: DBA neighbours (``None``: no augmentation).
        dba_alpha: DBA exponent.
        is_query: ``(N,)`` bool, or ``None`` (all rows).
        is_gallery: ``(N,)`` bool, or ``None`` (all rows).
        **metric_args: Passed to :func:`~supcon.evaluation.retrieval_metrics` (``ks``,
            ``map_ks``, ``device`` …).

    Returns:
        The metrics dict of :func:`~supcon.evaluation.retrieval_metrics`.
    """
    from supcon.evaluation.metrics import retrieval_metrics

    x = unit_rows(embeddings, "embeddings")
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    labels = np.asarray(labels)
    n = len(x)
    q_rows = np.arange(n) if is_query is None else np.flatnonzero(np.asarray(is_query))
    g_rows = np.arange(n) if is_gallery is None else np.flatnonzero(np.asarray(is_gallery))
    if qe is None and dba is None:
        return retrieval_metrics(x, labels, is_query=is_query, is_gallery=is_gallery, **metric_args)
    gallery = x[g_rows]
    if dba is not None:
        gallery = database_augmentation(gallery, dba, dba_alpha)
    query = x[q_rows]
    if qe is not None:
        position = np.full(n, -1, dtype=np.int64)
        position[g_rows] = np.arange(len(g_rows))
        exclude = position[q_rows]
        if (exclude < 0).all():
            exclude = None
        query = query_expansion(query, gallery, qe, qe_alpha, exclude=exclude)
    return retrieval_metrics(
        query,
        labels[q_rows],
        gallery,
        labels[g_rows],
        source_ids=q_rows,
        gallery_source_ids=g_rows,
        **metric_args,
    )


def approximate_recall(
    embeddings: ArrayLike,
    labels: ArrayLike,
    params: Any,
    *,
    refine: int | None = None,
    ks: tuple[int, ...] = (1, 2, 4, 8),
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
) -> dict[str, float]:
    """Recall@k through an approximate FAISS index (optionally refined), and its overlap with
    exact search: what ``supcon eval --index TYPE [--refine K]`` reports.

    Args:
        embeddings: ``(N, D)``.
        labels: ``(N,)``.
        params: :class:`~supcon.evaluation.index.IndexParams` of the index to measure
            (``ivfpq`` keeps exact vectors when ``refine`` is given).
        refine: Shortlist size re-scored exactly, or ``None``.
        ks: Recall cut-offs.
        is_query: ``(N,)`` bool, or ``None`` (all rows; no item retrieves itself).
        is_gallery: ``(N,)`` bool, or ``None`` (all rows).

    Returns:
        ``{"recall@k": …, "recall@K_vs_exact": …, "num_queries": …}`` with ``K = max(ks)``:
        the fraction of the exact top-K that the index returns.
    """
    import dataclasses

    from supcon.evaluation.index import build_index

    x = unit_rows(embeddings, "embeddings")
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    n, depth = len(x), max(ks)
    q_rows = np.arange(n) if is_query is None else np.flatnonzero(np.asarray(is_query))
    g_rows = np.arange(n) if is_gallery is None else np.flatnonzero(np.asarray(is_gallery))
    if refine is not None and params.kind == "ivfpq":
        params = dataclasses.replace(params, store_exact=True)
    found: dict[str, np.ndarray] = {}
    for name, p, r in (("approx", params, refine), ("exact", None, None)):
        index = build_index(x[g_rows], ids=g_rows, params=p)
        _, ids = index.search(x[q_rows], min(depth + 1, len(g_rows)), refine=r)
        lists = np.full((len(q_rows), depth), -1, dtype=np.int64)
        for i, (row, hits) in enumerate(zip(q_rows, ids, strict=True)):
            kept = hits[hits != row][:depth]
            lists[i, : len(kept)] = kept
        found[name] = lists
    in_gallery = np.zeros(n, dtype=bool)
    in_gallery[g_rows] = True
    counts = {
        lab: int(c) for lab, c in zip(*np.unique(labels[g_rows], return_counts=True), strict=True)
    }
    r = np.array([counts.get(labels[row], 0) - int(in_gallery[row]) for row in q_rows])
    scored = r > 0
    approx = found["approx"]
    rel = (approx >= 0) & (labels[np.maximum(approx, 0)] == labels[q_rows][:, None])
    out = {f"recall@{k}": float(rel[scored, :k].any(axis=1).mean()) for k in ks}
    overlap = [
        len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, int((e >= 0).sum()))
        for a, e in zip(approx, found["exact"], strict=True)
    ]
    out[f"recall@{depth}_vs_exact"] = float(np.mean(overlap))
    out["num_queries"] = int(scored.sum())
    return out
