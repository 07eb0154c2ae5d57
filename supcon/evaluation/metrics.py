"""Retrieval metrics from exact cosine nearest neighbours, computed one block of queries at a time.

For a query ``q`` the *ranked list* is every gallery item except the excluded ones (``q``
itself in leave-one-out, and items sharing ``q``'s source id when source ids are given), by
decreasing cosine similarity, ties by gallery position. ``rel_j`` is 1 when the ``j``-th item
shares ``q``'s label; ``R`` is the number of such items in the list; ``P@j`` is
``(1/j) Σ_{i≤j} rel_i``. Per query:

* ``recall@k``: 1 if some ``rel_j = 1`` with ``j ≤ k`` (the deep-metric-learning convention,
  not the information-retrieval one).
* ``precision@k``: ``(1/k) Σ_{j≤k} rel_j`` (PML's ``precision_at_k``; ``precision@1`` equals
  ``recall@1``).
* ``map@k``: ``(1/min(k, R)) Σ_{j≤k} P@j · rel_j``. PML's ``mean_average_precision`` divides
  by ``R`` instead; the two agree when ``k ≥ R``.
* ``map@r``: ``(1/R) Σ_{j≤R} P@j · rel_j`` and ``r_precision``: ``P@R`` (Musgrave et al., 2020;
  PML's ``mean_average_precision_at_r`` and ``r_precision``).

Each key is the mean over *scored* queries: those with ``R ≥ 1``. Queries whose label has no
item in their list (singletons, or labels absent from the gallery) are left out and counted in
``num_queries_without_positives``, as PML does with its "lone" queries.

Memory is ``O(N · K)`` at most (``K`` = the deepest list a query needs: ``max(max k, R)``) and
``O(chunk · K)`` when that does not fit; never ``N × N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from supcon import blocks
from supcon.devices import resolve_device
from supcon.evaluation import knn
from supcon.evaluation.backend import say
from supcon.evaluation.unit import as_numpy, unit_rows

ArrayLike = np.ndarray | torch.Tensor


def embedding_rows(x: ArrayLike, name: str) -> np.ndarray:
    """Validated, L2-normalised, C-contiguous float32 ``(N, D)`` (see :mod:`.unit`)."""
    return unit_rows(x, name, context=" before evaluating")


def _vector(x: ArrayLike, name: str, rows: int, rows_name: str) -> np.ndarray:
    arr = as_numpy(x)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise ValueError(f"{name} must be ({rows},) to match {rows_name}, got shape {arr.shape}.")
    return arr


def _cutoffs(values: Sequence[int], name: str) -> list[int]:
    out = sorted({int(k) for k in values})
    if any(k < 1 for k in out):
        raise ValueError(f"{name} must be positive integers, got {list(values)}.")
    return out


@dataclass(frozen=True)
class _Problem:
    """What to search: query and gallery rows, label codes, exclusion keys."""

    query: np.ndarray  # (Nq, D) normalised
    gallery: np.ndarray  # (Ng, D) normalised
    query_codes: np.ndarray  # (Nq,) int64
    gallery_codes: np.ndarray  # (Ng,) int64
    label_values: np.ndarray  # code -> original label
    query_keys: np.ndarray | None  # (Nq,) int64; equal keys are never neighbours
    gallery_keys: np.ndarray | None
    symmetric: bool  # gallery is the query set, row for row (leave-one-out)


def _codes(*arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    joined = np.concatenate(arrays)
    values, inverse = np.unique(joined, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    out, start = [], 0
    for a in arrays:
        out.append(inverse[start : start + len(a)])
        start += len(a)
    return values, out


def _problem(
    query: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike | None,
    gallery_labels: ArrayLike | None,
    source_ids: ArrayLike | None,
    gallery_source_ids: ArrayLike | None,
    is_query: ArrayLike | None,
    is_gallery: ArrayLike | None,
) -> _Problem:
    q = embedding_rows(query, "query")
    q_labels = _vector(query_labels, "query_labels", len(q), "query")
    sources = None if source_ids is None else _vector(source_ids, "source_ids", len(q), "query")
    if gallery is None:
        if gallery_labels is not None:
            raise ValueError("gallery_labels was given without gallery.")
        if gallery_source_ids is not None:
            raise ValueError("gallery_source_ids was given without gallery; use source_ids.")
        n = len(q)
        q_mask = np.ones(n, bool) if is_query is None else _vector(is_query, "is_query", n, "query")
        g_mask = np.ones(n, bool)
        if is_gallery is not None:
            g_mask = _vector(is_gallery, "is_gallery", n, "query")
        q_mask, g_mask = q_mask.astype(bool), g_mask.astype(bool)
        if not q_mask.any() or not g_mask.any():
            raise ValueError(
                "is_query and is_gallery must each select at least one item, got "
                f"{int(q_mask.sum())} queries and {int(g_mask.sum())} gallery items."
            )
        values, (codes,) = _codes(q_labels)
        if sources is None:
            keys = np.arange(n, dtype=np.int64)  # an item never retrieves itself
        else:
            _, (keys,) = _codes(sources)
        if q_mask.all() and g_mask.all():
            if n < 2:
                raise ValueError("leave-one-out needs at least 2 items; got 1.")
            return _Problem(
                q, q, codes, codes, values, None if sources is None else keys, None, True
            )
        q_idx, g_idx = np.flatnonzero(q_mask), np.flatnonzero(g_mask)
        return _Problem(
            np.ascontiguousarray(q[q_idx]),
            np.ascontiguousarray(q[g_idx]),
            codes[q_idx],
            codes[g_idx],
            values,
            keys[q_idx],
            keys[g_idx],
            False,
        )
    if is_query is not None or is_gallery is not None:
        raise ValueError("is_query / is_gallery select from one set; do not pass gallery too.")
    if gallery_labels is None:
        raise ValueError("gallery needs gallery_labels.")
    g = embedding_rows(gallery, "gallery")
    g_labels = _vector(gallery_labels, "gallery_labels", len(g), "gallery")
    if g.shape[1] != q.shape[1]:
        raise ValueError(
            f"query has dimension {q.shape[1]} but gallery has {g.shape[1]}; embed both "
            "with the same model."
        )
    values, (q_codes, g_codes) = _codes(q_labels, g_labels)
    q_keys = g_keys = None
    if (sources is None) != (gallery_source_ids is None):
        raise ValueError("pass both source_ids and gallery_source_ids, or neither.")
    if sources is not None:
        g_sources = _vector(gallery_source_ids, "gallery_source_ids", len(g), "gallery")
        _, (q_keys, g_keys) = _codes(sources, g_sources)
    return _Problem(q, g, q_codes, g_codes, values, q_keys, g_keys, False)


def _lookup(table_keys: np.ndarray, table_counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Counts of ``keys`` in a sorted unique table (0 when absent)."""
    if len(table_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64)
    pos = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
    return np.where(table_keys[pos] == keys, table_counts[pos], 0)


def _list_sizes(p: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """``(R, L)`` per query: same-label items in its list and the list's length."""
    g_keys = p.gallery_keys if not p.symmetric or p.query_keys is None else p.query_keys
    labels, counts = np.unique(p.gallery_codes, return_counts=True)
    r = _lookup(labels, counts, p.query_codes)
    n_gallery = len(p.gallery_codes)
    if p.symmetric and p.query_keys is None:
        return r - 1, np.full(len(r), n_gallery - 1, dtype=np.int64)
    if g_keys is None:
        return r, np.full(len(r), n_gallery, dtype=np.int64)
    q_keys = p.query_keys
    span = int(max(q_keys.max(), g_keys.max())) + 1
    pairs, pair_counts = np.unique(p.gallery_codes * span + g_keys, return_counts=True)
    keys, key_counts = np.unique(g_keys, return_counts=True)
    r = r - _lookup(pairs, pair_counts, p.query_codes * span + q_keys)
    return r, n_gallery - _lookup(keys, key_counts, q_keys)


def _score(
    ids: np.ndarray,
    q_codes: np.ndarray,
    g_codes: np.ndarray,
    r: np.ndarray,
    ks: list[int],
    precision_ks: list[tuple[int, int]],
    map_ks: list[int],
    at_r: bool,
) -> dict[str, np.ndarray]:
    """Per-query values for one block of ranked neighbour ids ``(n, K)``."""
    depth = ids.shape[1]
    rel = (ids >= 0) & (g_codes[np.maximum(ids, 0)] == q_codes[:, None])
    hits = np.cumsum(rel, axis=1, dtype=np.int64)
    rows = np.arange(len(ids))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = (hits[:, min(k, depth) - 1] > 0).astype(np.float64)
    for name_k, k in precision_ks:
        out[f"precision@{name_k}"] = hits[:, min(k, depth) - 1] / k
    if map_ks or at_r:
        precision = np.where(rel, hits / np.arange(1, depth + 1), 0.0)
        ap_sums = np.cumsum(precision, axis=1)
        for k in map_ks:
            out[f"map@{k}"] = ap_sums[:, min(k, depth) - 1] / np.minimum(k, r)
        if at_r:
            out["map@r"] = ap_sums[rows, r - 1] / r
            out["r_precision"] = hits[rows, r - 1] / r
    return out


def retrieval_metrics(
    query: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    precision_ks: Sequence[int] = (1,),
    map_ks: Sequence[int] = (),
    at_r: bool = True,
    source_ids: ArrayLike | None = None,
    gallery_source_ids: ArrayLike | None = None,
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
    per_class: bool = False,
    nmi: bool = False,
    chunk_size: int = 2048,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Recall@k, precision@k, mAP@k, mAP@R and R-precision of exact cosine retrieval.

    Three layouts: leave-one-out (``gallery=None``: every item queries all the others), query →
    gallery (two sets), or OML-style flags over one set (``is_query`` / ``is_gallery``; an item
    that is both never retrieves itself). Definitions are in the module docstring.

    Args:
        query: ``(Nq, D)`` embeddings (numpy or torch; L2-normalised inside).
        query_labels: ``(Nq,)`` labels (ints or strings).
        gallery: ``(Ng, D)`` gallery embeddings, or ``None`` for one set.
        gallery_labels: ``(Ng,)`` labels; required with ``gallery``.
        ks: Cut-offs for ``recall@k``.
        precision_ks: Cut-offs for ``precision@k``.
        map_ks: Cut-offs for ``map@k`` (none by default).
        at_r: Compute ``map@r`` and ``r_precision`` (searches ``R`` deep per query).
        source_ids: ``(Nq,)`` source of each query row (video, product, photo session); gallery
            items from the query's source are excluded from its list and from ``R``.
        gallery_source_ids: ``(Ng,)`` sources of gallery rows (with ``gallery``).
        is_query: ``(Nq,)`` bool: rows of ``query`` that are queries (without ``gallery``).
        is_gallery: ``(Nq,)`` bool: rows of ``query`` that form the gallery.
        per_class: Add ``"per_class"``: ``{label: {metric: value, "num_queries": n}}``.
        nmi: Add ``"nmi"`` and ``"ami"`` of faiss k-means on the query embeddings (as many
            clusters as query labels; see :func:`supcon.evaluation.clustering_scores`).
        chunk_size: Rows per block; bounds the working memory.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, or ``None`` (CUDA when inputs are CUDA
            tensors).
        seed: k-means seed (with ``nmi``).

    Returns:
        ``{"recall@k": …, "precision@k": …, "map@k": …, "map@r": …, "r_precision": …,
        ["nmi": …, "ami": …,] "num_queries": scored queries,
        "num_queries_without_positives": queries left out [, "per_class": {...}]}``.
        A cut-off larger than the longest list is clipped to it (and said); its key keeps the
        requested name.

    Raises:
        ValueError: on empty or non-finite inputs, mismatched shapes or dimensions, bad
            cut-offs, or when no query has a same-label item to find.
    """
    ks_, precision_ks_, map_ks_ = (
        _cutoffs(ks, "ks"),
        _cutoffs(precision_ks, "precision_ks"),
        _cutoffs(map_ks, "map_ks"),
    )
    if not ks_ and not precision_ks_ and not map_ks_ and not at_r:
        raise ValueError("nothing to compute: give ks, precision_ks or map_ks, or at_r=True.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}.")
    run_on = resolve_device(device, query, gallery)
    p = _problem(
        query, query_labels, gallery, gallery_labels, source_ids, gallery_source_ids,
        is_query, is_gallery,
    )  # fmt: skip
    r, lengths = _list_sizes(p)
    scored = np.flatnonzero(r > 0)
    if len(scored) == 0:
        raise ValueError(
            "no query label occurs in the gallery, so no retrieval metric is defined; check "
            "that query and gallery labels use the same ids."
        )
    longest = int(lengths[scored].max())
    wanted = max([*ks_, *precision_ks_, *map_ks_, 1])
    if wanted > longest:
        say(
            f"k={wanted} is larger than the {longest} gallery items a query can retrieve; "
            f"cut-offs above {longest} are clipped to {longest}."
        )
    clip = lambda k: min(k, longest)  # noqa: E731
    precision_pairs = [(k, clip(k)) for k in precision_ks_]
    depth = np.minimum(lengths, np.maximum(clip(wanted), r if at_r else 0))

    per_query: dict[str, np.ndarray] = {}

    def record(rows: np.ndarray, ids: np.ndarray) -> None:
        values = _score(
            ids, p.query_codes[rows], p.gallery_codes, r[rows], ks_, precision_pairs,
            map_ks_, at_r,
        )  # fmt: skip
        for name, v in values.items():
            per_query.setdefault(name, np.full(len(r), np.nan))[rows] = v

    max_depth = int(depth[scored].max())
    if p.symmetric and run_on.type == "cpu" and knn.symmetric_fits(len(p.query), max_depth):
        # Rows sorted by label meet their likely neighbours first (speed only).
        for rows, _, ids in knn.search_self_chunks(
            p.query,
            max_depth,
            keys=p.query_keys,
            order=np.argsort(p.query_codes, kind="stable"),
            block_size=min(max(chunk_size, 256), 4096),
            chunk_size=chunk_size,
        ):
            keep = r[rows] > 0
            if keep.any():
                rows, ids = rows[keep], ids[keep]
                record(rows, ids[:, : int(depth[rows].max())])
    else:
        by_depth = scored[np.argsort(depth[scored], kind="stable")]
        query_keys, gallery_keys = p.query_keys, p.gallery_keys
        if p.symmetric:  # leave-one-out on CUDA or beyond the symmetric budget
            query_keys = np.arange(len(p.query)) if p.query_keys is None else p.query_keys
            gallery_keys = query_keys
        gallery_rows: np.ndarray | torch.Tensor = p.gallery
        if run_on.type == "cuda":  # moved once, not per chunk
            gallery_rows = torch.from_numpy(p.gallery).to(run_on)
            if gallery_keys is not None:
                gallery_keys = torch.from_numpy(gallery_keys).to(run_on)
        start = 0
        while start < len(by_depth):
            # Deep lists (large classes) get fewer rows per chunk: chunk · K stays bounded.
            stop = min(start + chunk_size, len(by_depth))
            fit = blocks.rows_per_block(blocks.CHUNK_ELEMENTS, int(depth[by_depth[stop - 1]]))
            rows = by_depth[start : min(stop, start + fit)]
            start += len(rows)
            _, ids = knn.search_blocks(
                p.query[rows],
                gallery_rows,
                int(depth[rows].max()),
                query_keys=None if query_keys is None else query_keys[rows],
                gallery_keys=gallery_keys,
                device=run_on,
            )
            record(rows, ids)

    metrics: dict[str, Any] = {name: float(v[scored].mean()) for name, v in per_query.items()}
    if nmi:
        from supcon.evaluation.clustering import clustering_scores

        metrics.update(clustering_scores(p.query, p.query_codes, seed=seed))
    metrics["num_queries"] = len(scored)
    metrics["num_queries_without_positives"] = len(r) - len(scored)
    if per_class:
        metrics["per_class"] = _per_class(per_query, scored, p.query_codes, p.label_values)
    return metrics


def _per_class(
    per_query: dict[str, np.ndarray],
    scored: np.ndarray,
    codes: np.ndarray,
    label_values: np.ndarray,
) -> dict[Any, dict[str, float]]:
    """Mean of each metric over the scored queries of each label (PML's ``return_per_class``)."""
    classes, inverse, counts = np.unique(codes[scored], return_inverse=True, return_counts=True)
    table: dict[Any, dict[str, float]] = {}
    sums = {
        name: np.bincount(inverse, weights=v[scored], minlength=len(classes))
        for name, v in per_query.items()
    }
    for i, code in enumerate(classes):
        label = label_values[code]
        key = label.item() if hasattr(label, "item") else label
        table[key] = {name: float(s[i] / counts[i]) for name, s in sums.items()}
        table[key]["num_queries"] = int(counts[i])
    return table
