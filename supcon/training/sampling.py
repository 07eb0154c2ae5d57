"""Batch order: shuffled global batches split across ranks, and skipping batches on resume.

Batch samplers here yield the *index lists of this rank* and expose ``set_epoch``; every
rank draws the same global order from ``(seed, epoch)``, so the order is reproducible and a
resumed run can skip exactly the batches it already consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from supcon.errors import ConfigError


class BatchSampler(Protocol):
    """What the loop needs from a batch sampler."""

    def __iter__(self) -> Iterator[list[int]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


class RandomBatchSampler:
    """Shuffle every epoch, cut global batches, give each rank its contiguous slice.

    Args:
        num_items: Dataset size.
        batch_size: Global batch size (all ranks together); must divide by ``num_replicas``.
        num_replicas: Number of ranks.
        rank: This rank.
        seed: Shuffling seed; epoch ``e`` uses the permutation of ``(seed, e)``.

    Raises:
        ValueError: if the data cannot form one batch or the batch does not split evenly.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if batch_size % num_replicas:
            raise ConfigError(
                f"train.batch_size={batch_size} does not split evenly over {num_replicas} "
                f"processes; use a multiple of {num_replicas}"
            )
        if num_items < batch_size:
            raise ConfigError(
                f"train.batch_size={batch_size} is larger than the training split "
                f"({num_items} images); lower train.batch_size to at most "
                f"{num_items // num_replicas * num_replicas}"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.per_rank = batch_size // num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator)
        start = self.rank * self.per_rank
        for i in range(len(self)):
            batch = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield batch[start : start + self.per_rank].tolist()


class SkipBatches:
    """The batches of ``sampler`` after the first ``skip`` (resuming mid-epoch).

    Args:
        sampler: A batch sampler whose order is fixed once its epoch is set.
        skip: Batches to drop from the front.
    """

    def __init__(self, sampler: BatchSampler, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.sampler):
            if i >= self.skip:
                yield batch


class EpochBatches:
    """Index lists of ``(epoch, index)`` pairs, for one DataLoader reused across epochs.

    With ``persistent_workers`` the worker processes keep their own copy of the dataset, so
    the epoch cannot be set on it; it travels with each index instead
    (:class:`supcon.data.MultiViewDataset` accepts such pairs). Call :meth:`set_epoch` before
    iterating the loader for each epoch.

    Args:
        sampler: The batch sampler (its ``set_epoch`` is called too).
    """

    def __init__(self, sampler: BatchSampler) -> None:
        self.sampler = sampler
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Iterate ``epoch``'s batches, dropping the first ``skip`` (resuming mid-epoch)."""
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in SkipBatches(self.sampler, self.skip):
            yield [(self.epoch, index) for index in batch]
