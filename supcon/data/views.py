"""Datasets over a split: multi-view items for training, single images for embedding."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from supcon.data.transforms import Transform


class Split(Protocol):
    """What the datasets need from a split (``TensorSplit`` or ``FileSplit``)."""

    labels: np.ndarray
    class_names: tuple[str, ...]
    is_query: np.ndarray | None
    is_gallery: np.ndarray | None

    def __len__(self) -> int: ...

    def load(self, index: int) -> Any: ...


S = TypeVar("S", bound=Split)


def concat_splits(first: S, second: S) -> S:
    """Both splits as one split of ``second``'s kind: items and labels of ``first``, then
    ``second``'s; class names of ``second``; no query/gallery flags.

    Works for every split dataclass (image files, in-memory tensors): their per-item field
    (``paths`` or ``images``) is concatenated, the other fields are ``second``'s.
    """
    if type(first) is not type(second):
        raise TypeError(f"cannot join a {type(first).__name__} and a {type(second).__name__}")
    changes: dict[str, Any] = {
        "labels": np.concatenate([first.labels, second.labels]),
        "is_query": None,
        "is_gallery": None,
    }
    for field in dataclasses.fields(second):  # type: ignore[arg-type]
        mine, theirs = getattr(first, field.name), getattr(second, field.name)
        if isinstance(theirs, Tensor) and len(theirs) == len(second):
            changes[field.name] = torch.cat([mine, theirs])
        elif (
            field.name != "class_names" and isinstance(theirs, tuple) and len(theirs) == len(second)
        ):
            changes[field.name] = tuple(mine) + tuple(theirs)
    return dataclasses.replace(second, **changes)  # type: ignore[type-var]


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The torch seed of item ``index``'s views in ``epoch`` (a fixed 63-bit mix)."""
    return ((seed * 1_000_003 + epoch) * 2_654_435_761 + index) % (2**63 - 1)


class MultiViewDataset(Dataset):
    """Each item is ``(views, label, index)``: V independently augmented views of one image.

    With a ``seed``, item ``i`` of epoch ``e`` draws its augmentations from its own seed
    ``(seed, e, i)`` (the global RNG is left untouched), so views do not depend on the number
    of DataLoader workers, on how batches are split across DDP ranks, or on where a resumed run
    restarted.

    Args:
        split: The images.
        transform: Random augmentation applied independently to each view (drawing from
            torch's RNG, as torchvision's transforms do).
        views: Number of views per item.
        seed: Per-sample augmentation seed; ``None`` draws from the global RNG instead.

    Items:
        ``views``: ``(V, C, H, W)`` float tensor; ``label``: int (``-1`` if unlabeled);
        ``index``: position in ``split`` (doubles as the sample id).
    """

    def __init__(
        self, split: Split, transform: Transform, views: int, seed: int | None = None
    ) -> None:
        self.split = split
        self.transform = transform
        self.views = views
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation seeds of ``epoch`` (set it before iterating a loader)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Tensor, int, int]:
        """Item ``index`` of the current epoch, or of ``epoch`` for an ``(epoch, index)`` pair
        (what a DataLoader with persistent workers passes, see
        :class:`supcon.training.sampling.EpochBatches`)."""
        epoch = self.epoch
        if isinstance(index, tuple):
            epoch, index = index
        image = self.split.load(index)
        if self.seed is None:
            views = torch.stack([self.transform(image) for _ in range(self.views)])
        else:
            # Seed the CPU generator directly (torch.manual_seed also queues CUDA seeding,
            # which costs milliseconds per call) and put its state back afterwards.
            generator = torch.default_generator
            saved = generator.get_state()
            try:
                generator.manual_seed(augmentation_seed(self.seed, epoch, index))
                views = torch.stack([self.transform(image) for _ in range(self.views)])
            finally:
                generator.set_state(saved)
        return views, int(self.split.labels[index]), index


class EvalDataset(Dataset):
    """Each item is ``(image, label, index)`` with the deterministic eval transform.

    Args:
        split: The images.
        transform: Deterministic transform (``None``: images are already tensors of the
            right size, as for the digits).
    """

    def __init__(self, split: Split, transform: Transform | None = None) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self.split.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.split.labels[index]), index
