"""Retrieval metrics from nearest neighbours found with FAISS, computed one query chunk at a time.

Definitions (cosine similarity, queries never retrieve themselves in leave-one-out):

* ``recall@k``: fraction of queries with at least one same-label item among their k nearest
  gallery items (the deep-metric-learning convention, not the IR one).
* ``precision@1``: fraction of queries whose nearest neighbour shares their label.
* ``r_precision``: with ``R`` = number of same-label gallery items for the query, the fraction
  of the ``R`` nearest that share the label (Musgrave et al., 2020).
* ``map@r``: mean over queries of ``(1/R) Σ_{j≤R} P@j · rel_j`` (Musgrave et al., 2020).

Queries whose label has no item in the gallery cannot be scored and are left out (counted in
``num_queries_without_positives``). Memory is ``O(chunk · K)`` for ``K = max(max ks, max R)``,
never ``N × N``.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _embeddings(x: ArrayLike, name: str) -> np.ndarray:
    arr = _to_numpy(x, name).astype(np.float32, copy=False)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {arr.shape}.")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} row(s) with NaN or inf; drop or fix them before "
            "evaluating."
        )
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.ascontiguousarray(arr / np.maximum(norms, 1e-12))


def _labels(x: ArrayLike, name: str, rows: int, rows_name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise ValueError(f"{name} must be ({rows},) to match {rows_name}, got shape {arr.shape}.")
    return arr


def retrieval_metrics(
    query: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@k, precision@1, mAP@R and R-precision of cosine nearest-neighbour retrieval.

    Args:
        query: ``(Nq, D)`` query embeddings (numpy or torch).
        query_labels: ``(Nq,)`` labels.
        gallery: ``(Ng, D)`` gallery embeddings, or ``None`` for leave-one-out on ``query``.
        gallery_labels: ``(Ng,)`` labels; required with ``gallery``.
        ks: Cut-offs for ``recall@k``.
        chunk_size: Queries searched at once (bounds memory).

    Returns:
        ``{"recall@k": ..., "precision@1": ..., "map@r": ..., "r_precision": ...,
        "num_queries": ..., "num_queries_without_positives": ...}``.

    Raises:
        ValueError: on empty or non-finite inputs, shape mismatches or bad ``ks``.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}.")
    q = _embeddings(query, "query")
    q_labels = _labels(query_labels, "query_labels", len(q), "query")
    leave_one_out = gallery is None
    if leave_one_out:
        if gallery_labels is not None:
            raise ValueError("gallery_labels was given without gallery.")
        g, g_labels = q, q_labels
    else:
        if gallery_labels is None:
            raise ValueError("gallery needs gallery_labels.")
        g = _embeddings(gallery, "gallery")
        g_labels = _labels(gallery_labels, "gallery_labels", len(g), "gallery")
        if g.shape[1] != q.shape[1]:
            raise ValueError(
                f"query has dimension {q.shape[1]} but gallery has {g.shape[1]}; embed both "
                "with the same model."
            )

    # R: same-label gallery items per query (minus the query itself in leave-one-out).
    uniq, g_counts = np.unique(g_labels, return_counts=True)
    pos = np.searchsorted(uniq, q_labels)
    pos = np.clip(pos, 0, len(uniq) - 1)
    r = np.where(uniq[pos] == q_labels, g_counts[pos], 0) - (1 if leave_one_out else 0)
    searchable = len(g) - (1 if leave_one_out else 0)
    if searchable < 1:
        raise ValueError("the gallery has no item to retrieve (leave-one-out needs ≥ 2 queries).")
    depth = min(max(ks[-1], int(r.max(initial=0))), searchable)

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    sums = {f"recall@{k}": 0.0 for k in ks} | {"precision@1": 0.0, "map@r": 0.0, "r_precision": 0.0}
    scored = 0
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        _, idx = index.search(q[start:stop], depth + (1 if leave_one_out else 0))
        if leave_one_out:
            idx = _drop_self(idx, np.arange(start, stop), depth)
        r_chunk = r[start:stop]
        valid = r_chunk > 0
        relevant = (g_labels[idx] == q_labels[start:stop, None])[valid]
        r_chunk = r_chunk[valid]
        scored += int(valid.sum())
        for k in ks:
            sums[f"recall@{k}"] += float(relevant[:, :k].any(axis=1).sum())
        sums["precision@1"] += float(relevant[:, 0].sum())
        within_r = np.arange(depth)[None, :] < r_chunk[:, None]
        rel_r = relevant & within_r
        precision_at_j = np.cumsum(rel_r, axis=1) / np.arange(1, depth + 1)[None, :]
        sums["map@r"] += float(((precision_at_j * rel_r).sum(axis=1) / r_chunk).sum())
        sums["r_precision"] += float((rel_r.sum(axis=1) / r_chunk).sum())

    if scored == 0:
        raise ValueError(
            "no query label occurs in the gallery, so no retrieval metric is defined; check "
            "that query and gallery labels use the same ids."
        )
    metrics = {name: value / scored for name, value in sums.items()}
    metrics["num_queries"] = scored
    metrics["num_queries_without_positives"] = len(q) - scored
    return metrics


def _drop_self(idx: np.ndarray, self_ids: np.ndarray, depth: int) -> np.ndarray:
    """Remove each query's own index from its neighbour list, keeping ``depth`` neighbours."""
    is_self = idx == self_ids[:, None]
    # Stable sort moves the (at most one) self hit to the end of its row, keeping order.
    order = np.argsort(is_self, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)[:, :depth]
