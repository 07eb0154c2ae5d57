"""Clustering quality of embeddings: FAISS k-means, scored with NMI and AMI (scikit-learn).

As in PML's ``AccuracyCalculator``: cluster the (L2-normalised) embeddings into as many
clusters as there are labels, then compare cluster assignments with the labels. One
difference: centroids start from k-means++ seeds (scikit-learn's ``kmeans_plusplus``) instead of
random points, so that a poor start does not pass for poor embeddings (with random starts,
k-means merges well-separated clusters more often than not). Lloyd iterations run in FAISS.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
from sklearn.cluster import kmeans_plusplus
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score


def kmeans_assign(
    x: np.ndarray | torch.Tensor,
    num_clusters: int,
    *,
    niter: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Cluster rows with FAISS k-means (L2 on the given vectors) and assign each to a centroid.

    Args:
        x: ``(N, D)`` vectors.
        num_clusters: ``1 ≤ num_clusters ≤ N``.
        niter: Lloyd iterations.
        seed: Seed of the k-means++ seeding.

    Returns:
        ``(N,)`` int64 cluster ids.

    Raises:
        ValueError: for a bad ``num_clusters``.
    """
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not 1 <= num_clusters <= len(arr):
        raise ValueError(f"num_clusters must be in [1, {len(arr)}], got {num_clusters}.")
    kmeans = faiss.Kmeans(
        arr.shape[1],
        num_clusters,
        niter=niter,
        seed=seed,
        verbose=False,
        # FAISS subsamples to 256 points per centroid by default and warns when it has fewer
        # than 39; use every point and stay quiet about small sets.
        max_points_per_centroid=max(256, -(-len(arr) // num_clusters)),
        min_points_per_centroid=1,
    )
    seeds, _ = kmeans_plusplus(arr, num_clusters, random_state=seed)
    kmeans.train(arr, init_centroids=np.ascontiguousarray(seeds, dtype=np.float32))
    _, assign = kmeans.index.search(arr, 1)
    return assign[:, 0].astype(np.int64)


def clustering_scores(
    embeddings: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    niter: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """NMI and AMI between labels and k-means clusters (one cluster per distinct label).

    Args:
        embeddings: ``(N, D)``; L2-normalise first for cosine geometry.
        labels: ``(N,)`` labels.
        niter: Lloyd iterations.
        seed: Seed of the k-means++ seeding.

    Returns:
        ``{"nmi": …, "ami": …}`` (scikit-learn's ``normalized_mutual_info_score`` and
        ``adjusted_mutual_info_score``).
    """
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or len(y) != len(embeddings):
        raise ValueError(f"labels must be ({len(embeddings)},), got shape {y.shape}.")
    clusters = kmeans_assign(embeddings, len(np.unique(y)), niter=niter, seed=seed)
    return {
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        "ami": float(adjusted_mutual_info_score(y, clusters)),
    }
