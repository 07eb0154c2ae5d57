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
        (loss, number of anchors without positives). Anchors whose denominator holds only
        their one positive are excluded from the mean (and not counted as without positives);
        a batch without any negative pair has loss 0.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    num_anchors = m if num_anchors is None else num_anchors
    total, counted, without = 0.0, 0, 0
    has_negative = any(
        keep[i, a] and not pos[i, a] for i in range(num_anchors) for a in range(m) if a != i
    )
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
        if len(logits) == 1:
            # The denominator is the single positive: the term is log(1) = 0 identically and
            # the anchor is left out of the mean (PML's reducer drops zero terms too).
            continue
        top = max(logits)
        log_den = top + math.log(sum(math.exp(x - top) for x in logits))
        terms = [float(z[i] @ z[p]) / temperature - log_den for p in positives]
        total += -sum(terms) / len(terms)
        counted += 1
    # No negative pair anywhere: nothing is contrasted and the loss is 0 (PML's convention).
    return (total / counted if counted and has_negative else 0.0), without


def pair_masks_from_indices(indices_tuple: tuple, n: int) -> tuple[np.ndarray, np.ndarray]:
    """PML semantics: positives = the (a1, p) pairs, denominator = positives and (a2, n) pairs.

    Triplets (a, p, n) are read as pairs (a, p) and (a, n).
    """
    parts = [np.asarray(t, dtype=np.int64).reshape(-1) for t in indices_tuple]
    if len(parts) == 3:
        a, p, neg = parts
        parts = [a, p, a, neg]
    a1, p, a2, neg = parts
    pos = np.zeros((n, n), dtype=bool)
    keep = np.zeros((n, n), dtype=bool)
    for i, j in zip(a1, p, strict=True):
        if i != j:
            pos[i, j] = True
            keep[i, j] = True
    for i, j in zip(a2, neg, strict=True):
        if i != j:
            keep[i, j] = True
    return pos, keep


def reference_hcl(
    embeddings: np.ndarray,
    pos: np.ndarray,
    keep: np.ndarray,
    temperature: float,
    beta: float,
    num_anchors: int | None = None,
) -> float:
    """SupCon with HCL hard-negative reweighting (Robinson et al. 2021, tau_plus = 0), by loops.

    Denominator of anchor i: sum of exp(l_p) over its positives plus
    Ng = |N| * sum_n w_n exp(l_n) / sum_n w_n with w_n = exp(beta * l_n), l = cos / tau.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    num_anchors = m if num_anchors is None else num_anchors
    total, counted, any_negative = 0.0, 0, False
    for i in range(num_anchors):
        positives = [j for j in range(m) if j != i and pos[i, j]]
        negatives = [j for j in range(m) if j != i and keep[i, j] and not pos[i, j]]
        any_negative = any_negative or bool(negatives)
        if not positives or len(positives) + len(negatives) < 2:
            continue
        lp = [float(z[i] @ z[j]) / temperature for j in positives]
        ln = [float(z[i] @ z[j]) / temperature for j in negatives]
        den = sum(math.exp(x) for x in lp)
        if ln:
            w = [math.exp(beta * x) for x in ln]
            den += len(ln) * sum(wk * math.exp(x) for wk, x in zip(w, ln, strict=True)) / sum(w)
        total += -sum(x - math.log(den) for x in lp) / len(lp)
        counted += 1
    return total / counted if counted and any_negative else 0.0


def anchor_term(anchor: np.ndarray, positives: list, negatives: list, temperature: float) -> float:
    """One anchor's SupCon term for explicit candidate vectors (float64)."""

    def unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return v / np.linalg.norm(v)

    a = unit(anchor)
    lp = [float(a @ unit(p)) / temperature for p in positives]
    ln = [float(a @ unit(n)) / temperature for n in negatives]
    return term_from_logits(lp, ln)


def term_from_logits(lp: list, ln: list) -> float:
    """log(sum exp over positives and negatives) - mean of the positive logits."""
    allv = list(lp) + list(ln)
    top = max(allv)
    return top + math.log(sum(math.exp(x - top) for x in allv)) - sum(lp) / len(lp)


def brute_force_upper_bound(num_pos: int, num_neg: int, temperature: float) -> float:
    """Max of the anchor term over every vertex of the cosine box [-1, 1]^(P+Q)."""
    import itertools

    a = 1.0 / temperature
    best = -math.inf
    for signs in itertools.product((-1.0, 1.0), repeat=num_pos + num_neg):
        lp = [s * a for s in signs[:num_pos]]
        ln = [s * a for s in signs[num_pos:]]
        best = max(best, term_from_logits(lp, ln))
    return best


def reference_alignment_uniformity(
    embeddings: np.ndarray, pos: np.ndarray
) -> tuple[float, float, float]:
    """(alignment, uniformity, mean pairwise cosine) by loops (Wang & Isola 2020, alpha=2, t=2).

    alignment: mean over positive (i, j) pairs of ||z_i - z_j||^2; uniformity:
    log mean over i != j of exp(-2 ||z_i - z_j||^2).
    """
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z)
    align, n_pos, gauss, cos, n_pairs = 0.0, 0, 0.0, 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d2 = float(np.sum((z[i] - z[j]) ** 2))
            gauss += math.exp(-2.0 * d2)
            cos += float(z[i] @ z[j])
            n_pairs += 1
            if pos[i, j]:
                align += d2
                n_pos += 1
    return align / n_pos, math.log(gauss / n_pairs), cos / n_pairs


def numerical_gradient(fn, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar float64 function, one coordinate at a time.

    With ``eps = 1e-6`` the truncation (``O(eps²·f''')``) and rounding (``O(1e-16/eps)``)
    errors stay below ~1e-8 for the losses here (τ ≥ 0.1, unit rows), far below the size of
    any real gradient mistake.

    Args:
        fn: ``x -> float``.
        x: array of any shape (float64).

    Returns:
        ``∂fn/∂x``, same shape as ``x``.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + eps
        up = fn(x)
        flat[k] = saved - eps
        down = fn(x)
        flat[k] = saved
        out[k] = (up - down) / (2 * eps)
    return grad
