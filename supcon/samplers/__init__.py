"""Batch samplers for metric learning: M-per-class (DDP-aware) and few-shot episodes.

Both yield lists of dataset indices, so they plug into
``torch.utils.data.DataLoader(dataset, batch_sampler=sampler)``; :func:`create_sampler` builds
them from a recipe's ``sampler:`` section.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Any

from torch.utils.data import Sampler

from supcon.arguments import reject_arguments
from supcon.samplers._common import LabelsLike, as_label_array
from supcon.samplers.episodic import EpisodicSampler
from supcon.samplers.m_per_class import MPerClassSampler

SAMPLERS: dict[str, type[Sampler[list[int]]]] = {
    "episodic": EpisodicSampler,
    "m_per_class": MPerClassSampler,
}
_SHARED = ("labels", "batch_size", "num_replicas", "rank", "seed")


def create_sampler(
    name: str | None,
    labels: LabelsLike,
    *,
    batch_size: int | None,
    num_replicas: int | None = None,
    rank: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Sampler[list[int]] | None:
    """Build a batch sampler from a recipe's ``sampler:`` section.

    Args:
        name: ``"m_per_class"`` (:class:`MPerClassSampler`; needs ``m``), ``"episodic"``
            (:class:`EpisodicSampler`; needs ``n_way``, ``k_shot``, ``n_query``, ``episodes``),
            or ``"random"``/``None`` for plain shuffling (the caller's ``DataLoader(shuffle=True)``
            or ``DistributedSampler``).
        labels: ``(N,)`` class id of every dataset item.
        batch_size: Indices per batch on each rank. For ``"episodic"`` it must equal
            ``n_way * (k_shot + n_query)`` (or be ``None``).
        num_replicas: Number of ranks (default: from the process group).
        rank: This rank (default: from the process group).
        seed: Seed shared by all ranks.
        **kwargs: The sampler's own arguments (see above).

    Returns:
        The batch sampler (pass it as ``DataLoader(dataset, batch_sampler=...)`` and call its
        ``set_epoch(epoch)`` every epoch), or ``None`` for ``"random"``.

    Raises:
        ValueError: for an unknown name or argument (listing the valid ones), or any argument
            the sampler rejects.
    """
    if name is None or name == "random":
        reject_arguments("sampler", "random", kwargs)
        return None
    check_sampler_arguments(name, kwargs)
    cls = SAMPLERS[name]
    common = {"num_replicas": num_replicas, "rank": rank, "seed": seed}
    if cls is EpisodicSampler:
        sampler = EpisodicSampler(labels, **kwargs, **common)
        if batch_size is not None and batch_size != sampler.episode_size:
            raise ValueError(
                f"sampler 'episodic' yields n_way * (k_shot + n_query) = {sampler.episode_size} "
                f"indices per batch but batch_size={batch_size}; set batch_size to "
                f"{sampler.episode_size} (or change n_way, k_shot, n_query)."
            )
        return sampler
    if batch_size is None:
        raise ValueError(f"sampler {name!r} needs batch_size.")
    return cls(labels, batch_size=batch_size, **kwargs, **common)


def check_sampler_arguments(name: str, kwargs: Collection[str]) -> None:
    """Raise unless ``name`` is a sampler of :data:`SAMPLERS` and ``kwargs`` its own arguments.

    Args:
        name: A key of :data:`SAMPLERS` (``"random"`` takes no arguments: see
            :func:`create_sampler`).
        kwargs: The names of the arguments given (besides ``labels``, ``batch_size``,
            ``num_replicas``, ``rank``, ``seed``).

    Raises:
        ValueError: for an unknown sampler, an unknown argument or a missing one, listing the
            valid ones.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)} or 'random'.")
    params = inspect.signature(SAMPLERS[name].__init__).parameters
    own = [p for p in params if p != "self" and p not in _SHARED]
    unknown = sorted(set(kwargs) - set(own))
    missing = [p for p in own if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"unknown argument(s) {unknown}")
        if missing:
            problems.append(f"missing argument(s) {missing}")
        raise ValueError(
            f"sampler {name!r}: {' and '.join(problems)}; its arguments are {own} (plus "
            f"batch_size, num_replicas, rank, seed)."
        )


__all__ = [
    "SAMPLERS",
    "EpisodicSampler",
    "MPerClassSampler",
    "as_label_array",
    "check_sampler_arguments",
    "create_sampler",
]
