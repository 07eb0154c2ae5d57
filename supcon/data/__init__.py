"""Datasets and multi-view augmentation."""

from supcon.data.digits import ImageSplit, load_digits_splits
from supcon.data.views import MultiViewDataset, digit_augmentation

__all__ = ["ImageSplit", "MultiViewDataset", "digit_augmentation", "load_digits_splits"]
