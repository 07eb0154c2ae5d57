"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor


@dataclass(frozen=True)
class ImageSplit:
    """Images held in memory.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 class ids.
        class_names: Name of each class id.
    """

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_splits(
    image_size: int, test_fraction: float, seed: int
) -> tuple[ImageSplit, ImageSplit]:
    """Load the digits, resize them and split each class into train and held-out parts.

    Args:
        image_size: Output side length (bilinear upsampling from 8×8).
        test_fraction: Fraction of each class held out.
        seed: Seed of the stratified split.

    Returns:
        ``(train, test)`` splits, images ``(N, 1, image_size, image_size)``.
    """
    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    names = tuple(str(n) for n in bunch.target_names)
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return (
        ImageSplit(images[train_idx].contiguous(), labels[train_idx], names),
        ImageSplit(images[test_idx].contiguous(), labels[test_idx], names),
    )
