"""Linear evaluation of frozen embeddings: a logistic-regression classifier on the training
split, scored on the held-out split.

This is the linear-evaluation protocol of SimCLR (Chen et al. 2020) and SupCon (Khosla et al.
2020, Sec. 4: a linear classifier on the frozen representation, top-1 accuracy), here with
scikit-learn's ``LogisticRegression`` (multinomial, L2, lbfgs) on L2-normalised embeddings of
un-augmented images, so the answer is deterministic. It needs the held-out classes to be among
the training classes: class-disjoint retrieval splits (CUB, Cars, SOP, few-shot novel classes)
cannot be scored this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from supcon.evaluation.metrics import ArrayLike, embedding_rows
from supcon.evaluation.unit import as_numpy


def linear_probe(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Fit a logistic regression on frozen training embeddings, report held-out accuracy.

    Args:
        train_embeddings: ``(N, D)`` embeddings of the training split (L2-normalised inside).
        train_labels: ``(N,)`` int class ids.
        test_embeddings: ``(M, D)`` embeddings of the held-out split.
        test_labels: ``(M,)`` int class ids, every one of them present in ``train_labels``.
        c: Inverse L2 regularisation strength (scikit-learn's ``C``).
        max_iter: lbfgs iterations.

    Returns:
        ``{"linear_probe_accuracy", "linear_probe_train_accuracy", "linear_probe_classes",
        "linear_probe_num_train", "linear_probe_num_test"}``; accuracies in ``[0, 1]``.

    Raises:
        ValueError: for mismatched shapes, fewer than two training classes, or held-out classes
            that the training split lacks (class-disjoint splits).
    """
    from sklearn.linear_model import LogisticRegression

    x_train = embedding_rows(train_embeddings, "train_embeddings")
    x_test = embedding_rows(test_embeddings, "test_embeddings")
    y_train = as_numpy(train_labels).astype(np.int64).reshape(-1)
    y_test = as_numpy(test_labels).astype(np.int64).reshape(-1)
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise ValueError(
            f"labels must match the embeddings: got {len(y_train)} train labels for "
            f"{len(x_train)} rows and {len(y_test)} test labels for {len(x_test)} rows."
        )
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train and test embeddings differ in dimension ({x_train.shape[1]} vs "
            f"{x_test.shape[1]}); embed both with the same model."
        )
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split.")
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if len(unseen):
        raise ValueError(
            f"the linear probe needs shared classes, but {len(unseen)} of "
            f"{len(np.unique(y_test))} held-out classes are not in the training split (a "
            "class-disjoint split such as CUB/Cars/SOP or few-shot novel classes); use "
            "retrieval or few-shot metrics there, or data.split_by=sample."
        )
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit(x_train.astype(np.float64), y_train)
    return {
        "linear_probe_accuracy": float((model.predict(x_test.astype(np.float64)) == y_test).mean()),
        "linear_probe_train_accuracy": float(
            (model.predict(x_train.astype(np.float64)) == y_train).mean()
        ),
        "linear_probe_classes": len(classes),
        "linear_probe_num_train": len(y_train),
        "linear_probe_num_test": len(y_test),
    }
