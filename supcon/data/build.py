"""Turn the ``data:`` section of a recipe into train and held-out splits and their transforms."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from supcon.data.benchmarks import BENCHMARKS, load_benchmark
from supcon.data.digits import load_digits_splits
from supcon.data.sources import (
    EVAL_SPLITS,
    TRAIN_SPLITS,
    DataError,
    FileSplit,
    read_csv_manifest,
    scan_image_folder,
)
from supcon.data.splits import split_by_class, split_by_sample
from supcon.data.transforms import (
    Transform,
    digit_augmentation,
    eval_transform,
    resolve_image_config,
    simclr_augmentation,
)
from supcon.data.views import Split

if TYPE_CHECKING:
    from supcon.config import DataConfig

DIGITS_IMAGE_SIZE = 16


def input_channels(config: DataConfig) -> int:
    """Channels of the images the recipe's data yields (1 for digits, 3 otherwise)."""
    return 1 if config.dataset == "digits" else 3


def _split(files: FileSplit, config: DataConfig, seed: int) -> tuple[FileSplit, FileSplit]:
    try:
        if config.split_by == "class":
            train_idx, test_idx = split_by_class(files.labels, config.test_fraction)
        else:
            train_idx, test_idx = split_by_sample(files.labels, config.test_fraction, seed)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return files.subset(train_idx), files.subset(test_idx)


def _folder_splits(config: DataConfig, seed: int) -> tuple[FileSplit, FileSplit]:
    if not config.root:
        raise DataError("data.dataset=folder needs data.root, a folder of class sub-folders")
    root = Path(config.root)
    train_dir = root / "train"
    eval_dirs = [root / name for name in ("test", "val", "validation") if (root / name).is_dir()]
    if train_dir.is_dir() and eval_dirs:
        train = scan_image_folder(train_dir)
        return train, scan_image_folder(eval_dirs[0], class_names=train.class_names)
    return _split(scan_image_folder(root), config, seed)


def _csv_splits(config: DataConfig, seed: int) -> tuple[FileSplit, FileSplit]:
    if not config.manifest:
        raise DataError(
            "data.dataset=csv needs data.manifest, a CSV with columns path,label[,split,...]"
        )
    manifest = read_csv_manifest(config.manifest, config.root)
    if manifest.splits is None:
        return _split(manifest.files, config, seed)
    splits = np.asarray(manifest.splits)
    unknown = sorted(str(s) for s in set(splits) - set(TRAIN_SPLITS) - set(EVAL_SPLITS))
    if unknown:
        raise DataError(
            f"manifest split values {unknown} are not recognised; use 'train' for training rows "
            f"and one of {', '.join(EVAL_SPLITS)} for held-out rows"
        )
    is_train = np.isin(splits, TRAIN_SPLITS)
    return manifest.files.subset(np.flatnonzero(is_train)), manifest.files.subset(
        np.flatnonzero(~is_train)
    )


def load_splits(config: DataConfig, seed: int) -> tuple[Split, Split]:
    """Read the configured data and split it into training and held-out parts.

    Args:
        config: The ``data:`` section.
        seed: Seed of random splits.

    Returns:
        ``(train, held_out)``.

    Raises:
        DataError: describing what is wrong with the data and how to fix it.
    """
    if config.dataset == "digits":
        train, test = load_digits_splits(
            config.image_size or DIGITS_IMAGE_SIZE, config.test_fraction, seed, config.split_by
        )
    elif config.dataset == "folder":
        train, test = _folder_splits(config, seed)
    elif config.dataset in BENCHMARKS:
        train, test = load_benchmark(config.dataset, config.root)
    else:
        train, test = _csv_splits(config, seed)
    if len(train) == 0:
        raise DataError(
            "the training split is empty; check data.root / data.manifest and the split column"
        )
    if len(test) == 0:
        raise DataError(
            "the held-out split is empty; raise data.test_fraction or add held-out rows"
        )
    return train, test


def build_transforms(config: DataConfig, backbone: nn.Module) -> tuple[Transform, Transform | None]:
    """Training augmentation and eval transform for the configured data and backbone.

    Args:
        config: The ``data:`` section.
        backbone: The timm backbone (its pretrained config sets size, mean and std).

    Returns:
        ``(train_transform, eval_transform)``; the digits need no eval transform (``None``).
    """
    if config.dataset == "digits":
        return digit_augmentation(config.image_size or DIGITS_IMAGE_SIZE), None
    image_config = resolve_image_config(backbone, config.image_size)
    return simclr_augmentation(image_config, config.color_jitter), eval_transform(image_config)
