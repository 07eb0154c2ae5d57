"""Datasets (bundled digits, image folders, CSV manifests), splits and multi-view transforms."""

from supcon.data.augment import build_augmentation, build_eval_transform, parse_transforms
from supcon.data.build import build_transforms, input_channels, load_splits, with_channels
from supcon.data.digits import TensorSplit, load_digits_splits
from supcon.data.sources import DataError, FileSplit, read_csv_manifest, scan_image_folder
from supcon.data.transforms import (
    digit_augmentation,
    eval_transform,
    resolve_image_config,
    simclr_augmentation,
)
from supcon.data.views import EvalDataset, MultiViewDataset, Split

__all__ = [
    "DataError",
    "EvalDataset",
    "FileSplit",
    "MultiViewDataset",
    "Split",
    "TensorSplit",
    "build_augmentation",
    "build_eval_transform",
    "build_transforms",
    "digit_augmentation",
    "eval_transform",
    "input_channels",
    "load_digits_splits",
    "load_splits",
    "parse_transforms",
    "read_csv_manifest",
    "resolve_image_config",
    "scan_image_folder",
    "simclr_augmentation",
    "with_channels",
]
