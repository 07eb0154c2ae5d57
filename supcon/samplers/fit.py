"""Can the training data form the batches a recipe asks for? If not, what is the largest that can.

Pure functions of the class sizes, checked before any model or weights are built, so a recipe
written for a large dataset fails on a small folder in a second with a fix to copy.
"""

from __future__ import annotations

import numpy as np


def largest_m_per_class_batch(num_classes: int, m: int, num_replicas: int = 1) -> int:
    """Largest global ``batch_size`` an M-per-class sampler can draw from ``num_classes``.

    Every rank's batch holds ``batch_size / num_replicas / m`` distinct classes and the ranks
    draw disjoint classes, so a step needs ``batch_size / m`` classes, at least 2.

    Returns:
        ``m * (num_classes // num_replicas) * num_replicas``, or 0 when fewer than 2 classes
        fit in a step.
    """
    classes_per_step = (num_classes // num_replicas) * num_replicas
    return m * classes_per_step if classes_per_step >= 2 else 0


def m_per_class_problem(
    labels: np.ndarray, batch_size: int, m: int, num_replicas: int = 1
) -> str | None:
    """Why an M-per-class sampler cannot form ``batch_size`` from ``labels``, with a fix.

    Only the "too few classes" case is handled here (the sampler itself reports a batch not
    divisible by ``m`` and other argument errors).

    Args:
        labels: ``(N,)`` class ids of the training split.
        batch_size: The global batch (``train.batch_size``).
        m: Images per class in a batch (``sampler.args.m``).
        num_replicas: Training processes.

    Returns:
        ``None`` when the batch fits, else one sentence naming the largest batch that fits
        with this ``m`` and, when every class has enough images, with a larger ``m``.
    """
    if m < 1 or batch_size < m or batch_size % (m * num_replicas):
        return None
    _, sizes = np.unique(np.asarray(labels), return_counts=True)
    num_classes = len(sizes)
    needed = batch_size // m
    if needed <= num_classes:
        return None
    smallest, largest = int(sizes.min()), int(sizes.max())
    images = f"{smallest}" if smallest == largest else f"{smallest}–{largest}"
    where = f" over {num_replicas} processes" if num_replicas > 1 else ""
    head = (
        f"train.batch_size={batch_size} with sampler.args.m={m} needs {needed} classes per "
        f"batch{where}, but the training split has {num_classes} "
        f"({images} images each)"
    )
    fits = largest_m_per_class_batch(num_classes, m, num_replicas)
    if fits == 0:
        return f"{head}: use fewer processes, or add classes"
    options = [f"train.batch_size={fits} (m={m})"]
    bigger_m = m
    while bigger_m * 2 <= smallest:
        bigger_m *= 2
    if bigger_m > m:
        options.append(
            f"train.batch_size={largest_m_per_class_batch(num_classes, bigger_m, num_replicas)}"
            f" sampler.args.m={bigger_m} (every class has ≥ {bigger_m} images)"
        )
    return f"{head}: use {' or '.join(options)}, or add classes"
