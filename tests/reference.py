"""Slow, obviously-correct float64 references that tests compare the fast code against.

Written as explicit loops over anchors from the paper's formula, sharing no code with supcon.
"""

from __future__ import annotations

import math

import numpy as np


def pair_masks_from_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and denominator masks (N, N) for integer or multi-hot labels."""
    n = len(labels)
    pos = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if labels.ndim == 1:
                pos[i, j] = labels[i] == labels[j]
            else:
                pos[i, j] = bool(np.any(labels[i].astype(bool) & labels[j].astype(bool)))
    keep = ~np.eye(n, dtype=bool)
    return pos, keep


def flatten_views(embeddings: np.ndarray) -> np.ndarray:
    """(B, V, D) -> (V*B, D), view-major rows (row v*B + b)."""
    v = embeddings.shape[1]
    return np.concatenate([embeddings[:, k] for k in range(v)], axis=0)


def reference_supcon(
    embeddings: np.ndarray,
    pos: np.ndarray,
    keep: np.ndarray,
    temperature: float,
    num_anchors: int | None = None,
) -> tuple[float, int]:
    """SupCon L_out in float64 by explicit loops.

    Args:
        embeddings: (M, D) candidates; the first ``num_anchors`` are anchors.
        pos: (M, M) or (num_anchors, M) positives.
        keep: same shape, pairs in the denominator.
        temperature: tau.
        num_anchors: anchors (default: all rows).

    Returns:
        (loss, number of anchors without positives)
    """
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    num_anchors = m if num_anchors is None else num_anchors
    total, counted, without = 0.0, 0, 0
    for i in range(num_anchors):
        positives = [j for j in range(m) if j != i and pos[i, j]]
        if not positives:
            without += 1
            continue
        logits = [
            float(z[i] @ z[a]) / temperature
            for a in range(m)
            if a != i and (keep[i, a] or pos[i, a])
        ]
        top = max(logits)
        log_den = top + math.log(sum(math.exp(x - top) for x in logits))
        terms = [float(z[i] @ z[p]) / temperature - log_den for p in positives]
        total += -sum(terms) / len(terms)
        counted += 1
    return (total / counted if counted else 0.0), without
