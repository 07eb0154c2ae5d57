"""Multi-view datasets: each item is V independently augmented views of one image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from supcon.data.digits import ImageSplit


def digit_augmentation(image_size: int) -> Callable[[Tensor], Tensor]:
    """Geometric jitter for small grayscale glyphs (no flips: they change the digit).

    Args:
        image_size: Side length of the input and output images.

    Returns:
        A transform ``(C, H, W) -> (C, H, W)``.
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomAffine(degrees=12, translate=(0.08, 0.08), shear=8),
        ]
    )


class MultiViewDataset(Dataset):
    """Wraps in-memory images so each item is ``(views, label, index)``.

    Args:
        split: Images and labels.
        transform: Random augmentation applied independently to each view.
        views: Number of views per item.
    """

    def __init__(
        self, split: ImageSplit, transform: Callable[[Tensor], Tensor], views: int
    ) -> None:
        self.split = split
        self.transform = transform
        self.views = views

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self.split.images[index]
        views = torch.stack([self.transform(image) for _ in range(self.views)])
        return views, int(self.split.labels[index]), index
