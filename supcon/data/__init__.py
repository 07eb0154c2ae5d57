"""Datasets (bundled digits, image folders, CSV manifests), splits and multi-view transforms.

Names are imported on first use (PEP 562), so importing one module of the package
(``supcon.data.views``) does not load the augmentation pipeline or the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supcon._lazy import lazy_exports

#: Public name → the module that defines it.
_EXPORTS = {
    "build_augmentation": "supcon.data.augment",
    "build_eval_transform": "supcon.data.augment",
    "parse_transforms": "supcon.data.augment",
    "build_transforms": "supcon.data.build",
    "input_channels": "supcon.data.build",
    "load_splits": "supcon.data.build",
    "with_channels": "supcon.data.build",
    "TensorSplit": "supcon.data.digits",
    "load_digits_splits": "supcon.data.digits",
    "DataError": "supcon.data.sources",
    "FileSplit": "supcon.data.sources",
    "read_csv_manifest": "supcon.data.sources",
    "scan_image_folder": "supcon.data.sources",
    "digit_augmentation": "supcon.data.transforms",
    "eval_transform": "supcon.data.transforms",
    "resolve_image_config": "supcon.data.transforms",
    "simclr_augmentation": "supcon.data.transforms",
    "EvalDataset": "supcon.data.views",
    "MultiViewDataset": "supcon.data.views",
    "Split": "supcon.data.views",
}

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

if TYPE_CHECKING:
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


__getattr__, __dir__ = lazy_exports("supcon.data", _EXPORTS, globals())
