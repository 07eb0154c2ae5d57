"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from supcon.data.splits import split_by_class, split_by_sample


@dataclass(frozen=True)
class TensorSplit:
    """Images held in memory as one tensor.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 class ids.
        class_names: Name of each class id.
    """

    images: Tensor
    labels: np.ndarray
    class_names: tuple[str, ...]
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labeled(self) -> bool:
        return True

    def load(self, index: int) -> Tensor:
        """Image ``index`` as ``(C, H, W)``."""
        return self.images[index]


def load_digits_splits(
    image_size: int, test_fraction: float, seed: int, split_by: str = "sample"
) -> tuple[TensorSplit, TensorSplit]:
    """Load the digits, resize them and split them into train and held-out parts.

    Args:
        image_size: Output side length (bilinear upsampling from 8×8).
        test_fraction: Fraction held out (of each class, or of the classes).
        seed: Seed of the stratified split.
        split_by: ``"sample"`` (every class on both sides) or ``"class"`` (disjoint classes).

    Returns:
        ``(train, test)`` splits, images ``(N, 1, image_size, image_size)``.
    """
    from sklearn.datasets import load_digits  # scipy + sklearn: only for these data

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    labels = bunch.target.astype(np.int64)
    if split_by == "class":
        train_idx, test_idx = split_by_class(labels, test_fraction)
    else:
        train_idx, test_idx = split_by_sample(labels, test_fraction, seed)
    names = tuple(str(n) for n in bunch.target_names)
    return (
        TensorSplit(images[train_idx].contiguous(), labels[train_idx], names),
        TensorSplit(images[test_idx].contiguous(), labels[test_idx], names),
    )
