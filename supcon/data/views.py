"""Datasets over a split: multi-view items for training, single images for embedding."""

from __future__ import annotations

from typing import Any, Protocol

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


class MultiViewDataset(Dataset):
    """Each item is ``(views, label, index)``: V independently augmented views of one image.

    Args:
        split: The images.
        transform: Random augmentation applied independently to each view.
        views: Number of views per item.

    Items:
        ``views``: ``(V, C, H, W)`` float tensor; ``label``: int (``-1`` if unlabeled);
        ``index``: position in ``split`` (doubles as the sample id).
    """

    def __init__(self, split: Split, transform: Transform, views: int) -> None:
        self.split = split
        self.transform = transform
        self.views = views

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self.split.load(index)
        views = torch.stack([self.transform(image) for _ in range(self.views)])
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
