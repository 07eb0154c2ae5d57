"""``EpisodicSampler``: N-way K-shot episodes with Q queries per class, for few-shot work."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from supcon.samplers._common import (
    LabelsLike,
    as_label_array,
    check_positive_int,
    check_seed,
    epoch_rng,
    indices_by_class,
    resolve_replicas,
)


class EpisodicSampler(Sampler[list[int]]):
    """Batch sampler of few-shot episodes: ``n_way`` classes × (``k_shot`` + ``n_query``).

    Each episode draws ``n_way`` distinct classes uniformly, then ``k_shot + n_query``
    distinct samples of each (never with replacement, so a query is never one of the support
    samples). It yields ``n_way * (k_shot + n_query)`` dataset indices laid out as

    * ``[: n_way * k_shot]``: the support set, class by class (``k_shot`` per class);
    * ``[n_way * k_shot :]``: the query set, class by class in the same class order
      (``n_query`` per class).

    Classes with fewer than ``k_shot + n_query`` samples cannot fill an episode and are left
    out (with a warning saying how many).

    **Determinism and distribution.** Episode ``i`` of an epoch depends only on
    ``(labels, seed, epoch, i)``. With ``num_replicas`` ranks, rank ``r`` yields episodes
    ``r, r + num_replicas, r + 2 * num_replicas, ...``: every rank yields
    ``ceil(episodes / num_replicas)`` episodes and together they yield episodes
    ``0 .. episodes - 1`` (plus up to ``num_replicas - 1`` extra ones to even out the ranks), the
    same episodes a single process yields. For a fixed evaluation set, keep ``epoch`` at 0;
    for training, call :meth:`set_epoch` every epoch.

    Args:
        labels: ``(N,)`` class id of every dataset item.
        n_way: Classes per episode (``>= 2``).
        k_shot: Support samples per class (``>= 1``).
        n_query: Query samples per class (``>= 0``).
        episodes: Episodes per epoch over all ranks.
        num_replicas: Number of ranks; default: the process group's world size.
        rank: This rank; default: the process group's rank.
        seed: Seed shared by all ranks.

    Raises:
        ValueError: on missing labels, bad counts, or fewer than ``n_way`` classes with
            ``k_shot + n_query`` samples; the message says what to change.

    Example:
        >>> sampler = EpisodicSampler(labels, n_way=5, k_shot=1, n_query=15, episodes=600)
        >>> shots = sampler.n_way * sampler.k_shot
        >>> for images, labels in DataLoader(dataset, batch_sampler=sampler):
        ...     support, query = images[:shots], images[shots:]
    """

    def __init__(
        self,
        labels: LabelsLike,
        n_way: int,
        k_shot: int,
        n_query: int,
        episodes: int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        label_array = as_label_array(labels)
        self.n_way = check_positive_int(n_way, "n_way")
        self.k_shot = check_positive_int(k_shot, "k_shot")
        if isinstance(n_query, bool) or not isinstance(n_query, (int, np.integer)) or n_query < 0:
            raise ValueError(f"n_query must be an int >= 0, got {n_query!r}.")
        self.n_query = int(n_query)
        self.episodes = check_positive_int(episodes, "episodes")
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.seed = check_seed(seed)
        self.epoch = 0
        classes = indices_by_class(label_array)
        if len(classes) < 2:
            raise ValueError(
                "labels hold a single class; an episode needs n_way >= 2 classes (check that "
                "the labels were loaded)."
            )
        if self.n_way < 2:
            raise ValueError(f"n_way must be >= 2 (a 1-way episode is trivial), got {n_way}.")
        per_class = self.k_shot + self.n_query
        self._classes = [idx for idx in classes if len(idx) >= per_class]
        excluded = len(classes) - len(self._classes)
        if len(self._classes) < self.n_way:
            raise ValueError(
                f"only {len(self._classes)} of {len(classes)} classes have k_shot + n_query = "
                f"{per_class} samples, fewer than n_way={self.n_way}; lower n_way, k_shot or "
                "n_query."
            )
        if excluded:
            warnings.warn(
                f"EpisodicSampler: {excluded} of {len(classes)} classes have fewer than "
                f"k_shot + n_query = {per_class} samples and are left out of every episode.",
                UserWarning,
                stacklevel=2,
            )

    @property
    def episode_size(self) -> int:
        """Indices per episode: ``n_way * (k_shot + n_query)``."""
        return self.n_way * (self.k_shot + self.n_query)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose episodes :meth:`__iter__` yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}.")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Episodes per epoch on this (and every) rank."""
        return math.ceil(self.episodes / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        for j in range(len(self)):
            yield self.episode(j * self.num_replicas + self.rank)

    def episode(self, index: int) -> list[int]:
        """Episode ``index`` of the current epoch (the same on every rank).

        Returns:
            ``n_way * (k_shot + n_query)`` dataset indices: supports, then queries.
        """
        rng = epoch_rng(self.seed, self.epoch, index)
        chosen = rng.choice(len(self._classes), size=self.n_way, replace=False)
        draws = np.stack(
            [
                rng.choice(self._classes[c], size=self.k_shot + self.n_query, replace=False)
                for c in chosen
            ]
        )  # (n_way, k_shot + n_query)
        return np.concatenate(
            [draws[:, : self.k_shot].reshape(-1), draws[:, self.k_shot :].reshape(-1)]
        ).tolist()

    def __repr__(self) -> str:
        return (
            f"EpisodicSampler(n_way={self.n_way}, k_shot={self.k_shot}, "
            f"n_query={self.n_query}, episodes={self.episodes}, "
            f"num_replicas={self.num_replicas}, rank={self.rank}, seed={self.seed})"
        )
