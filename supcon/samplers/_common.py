"""Argument checks shared by the samplers: labels, replicas, positive ints, per-epoch RNGs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from supcon.distributed import get_rank, get_world_size

LabelsLike = Sequence[int] | np.ndarray | torch.Tensor


def as_label_array(labels: LabelsLike | None) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 numpy array, or raise saying what to pass.

    Args:
        labels: One class id per dataset item (list, numpy array or tensor).

    Returns:
        ``(N,)`` int64 array.

    Raises:
        ValueError: if labels are missing, empty, not 1-D or not integers.
    """
    if labels is None:
        raise ValueError(
            "labels is missing: pass one class id per dataset item, e.g. dataset.targets or "
            "[label for _, label in dataset.samples]."
        )
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"labels must be 1-D (one class id per dataset item), got shape {array.shape}."
        )
    if array.size == 0:
        raise ValueError("labels is empty; the dataset has no items to sample.")
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be integer class ids, got dtype {array.dtype}; map them to ints first "
            "(e.g. numpy.unique(labels, return_inverse=True)[1])."
        )
    return array.astype(np.int64, copy=False)


def indices_by_class(labels: np.ndarray) -> list[np.ndarray]:
    """Dataset indices of each class, classes in ascending id order, indices ascending."""
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def check_positive_int(value: object, name: str, hint: str = "") -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.{hint}")
    return int(value)


def resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill ``None`` from the process group (1 and 0 without one) and check the pair.

    Returns:
        ``(num_replicas, rank)``.
    """
    world = get_world_size() if num_replicas is None else num_replicas
    world = check_positive_int(world, "num_replicas")
    rank = get_rank() if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world:
        raise ValueError(f"rank must be an int in [0, num_replicas={world}), got {rank!r}.")
    return world, int(rank)


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is an int >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    return int(seed)


def epoch_rng(*keys: int) -> np.random.Generator:
    """A generator determined by ``keys`` (seed, epoch, ...) alone: the same on every rank."""
    return np.random.default_rng(list(keys))
