"""Deterministic train / held-out splits of a labelled item list."""

from __future__ import annotations

import math

import numpy as np

from supcon.errors import InputError


def split_by_sample(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``test_fraction`` of every class (stratified); classes appear on both sides.

    Args:
        labels: ``(N,)`` int class ids; all ``-1`` for unlabeled data (plain random split).
        test_fraction: In ``(0, 1)``.
        seed: Split seed.

    Returns:
        Sorted ``(train_indices, test_indices)``.

    Raises:
        ValueError: when a class is too small to appear on both sides.
    """
    indices = np.arange(len(labels))
    labeled = bool((labels >= 0).all())
    stratify = labels if labeled else None
    if labeled:
        counts = np.bincount(labels)
        small = np.flatnonzero((counts > 0) & (counts < 2))
        if len(small):
            raise InputError(
                f"{len(small)} class(es) have a single image, so they cannot be split by sample; "
                "add images, or set data.split_by=class"
            )
    from sklearn.model_selection import train_test_split  # heavy: only when splitting

    train, test = train_test_split(
        indices, test_size=test_fraction, stratify=stratify, random_state=seed
    )
    return np.sort(train), np.sort(test)


def split_by_class(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole classes: the last ``ceil(test_fraction · C)`` class ids (CUB/Cars style).

    Args:
        labels: ``(N,)`` int class ids ≥ 0.
        test_fraction: In ``(0, 1)``.

    Returns:
        Sorted ``(train_indices, test_indices)``; no class appears on both sides.

    Raises:
        ValueError: for unlabeled data or fewer than two classes.
    """
    if not bool((labels >= 0).all()):
        raise InputError(
            "data.split_by=class needs labels; unlabeled data can only be split by sample"
        )
    classes = np.unique(labels)
    if len(classes) < 2:
        raise InputError("data.split_by=class needs at least two classes")
    held = min(len(classes) - 1, max(1, math.ceil(test_fraction * len(classes))))
    test_classes = classes[-held:]
    is_test = np.isin(labels, test_classes)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
