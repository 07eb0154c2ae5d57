"""Data builders: the ``data:`` and ``augment:`` sections of a recipe in, splits and transforms out.

Like :mod:`supcon.builders`, this module reads config sections (and sits in the builders
layer); the datasets and transforms it makes take plain arguments.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from supcon.augment_spec import PRESET_DEFAULTS
from supcon.data.augment import build_augmentation, build_eval_transform
from supcon.data.benchmarks import BENCHMARKS, ArraySplit, load_benchmark
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
from supcon.data.transforms import Transform, resolve_image_config
from supcon.data.views import Split

if TYPE_CHECKING:
    from supcon.config import AugmentConfig, DataConfig

DIGITS_IMAGE_SIZE = 16


def input_channels(config: DataConfig) -> int:
    """Channels of the images the recipe's data yields: ``data.channels``, or by default 1 for
    the digits and 3 for image files."""
    from supcon.config import default_channels

    return default_channels(config)


def with_channels(split: Split, channels: int) -> Split:
    """``split`` yielding ``channels``-channel images (files read as ``L`` or ``RGB``; the
    in-memory grayscale digits repeated to 3 channels when asked)."""
    if isinstance(split, (FileSplit, ArraySplit)):
        return dataclasses.replace(split, mode="L" if channels == 1 else "RGB")
    images = getattr(split, "images", None)
    if images is not None and images.shape[1] != channels:
        if images.shape[1] != 1:
            raise DataError(f"cannot turn {images.shape[1]}-channel images into {channels}")
        return dataclasses.replace(split, images=images.expand(-1, channels, -1, -1).contiguous())
    return split


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
    manifest = read_csv_manifest(
        config.manifest, config.root, allow_outside_root=config.allow_outside_root
    )
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
    if isinstance(train, FileSplit) and config.max_image_pixels:
        limit = config.max_image_pixels
        train = dataclasses.replace(train, max_pixels=limit)
        test = dataclasses.replace(test, max_pixels=limit)
    channels = input_channels(config)
    return with_channels(train, channels), with_channels(test, channels)


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """timm's per-channel statistics for ``channels`` channels (averaged for grayscale)."""
    values = tuple(float(v) for v in values)
    if len(values) != channels:
        values = (sum(values) / len(values),) * channels
    return values


def build_transforms(
    config: DataConfig,
    backbone: nn.Module,
    augment: AugmentConfig | None = None,
    *,
    use_labels: bool = True,
    resize: str | None = None,
) -> tuple[Transform, Transform]:
    """Training augmentation and eval transform for the configured data and backbone.

    Args:
        config: The ``data:`` section (size, channels, mean/std overrides).
        backbone: The timm backbone (its pretrained config sets size, mean, std, crop
            fraction and interpolation).
        augment: The ``augment:`` section (``None``: the defaults).
        use_labels: ``loss.use_labels`` (picks the default preset).
        resize: ``eval.resize`` (``None``: ``full`` for the digits, else ``crop``).

    Returns:
        ``(train_transform, eval_transform)``.

    Raises:
        ValueError: for a bad augmentation setting (one line).
    """
    from supcon.augment_spec import resolve_preset
    from supcon.config import AugmentConfig

    augment = augment or AugmentConfig()
    channels = input_channels(config)
    default_size = DIGITS_IMAGE_SIZE if config.dataset == "digits" else None
    image_config = resolve_image_config(backbone, config.image_size or default_size)
    size = image_config["input_size"][-1]
    mean = config.mean or _per_channel(image_config["mean"], channels)
    std = config.std or _per_channel(image_config["std"], channels)
    knobs = augment.knobs()
    if config.color_jitter is not None and knobs["jitter"] is None:  # deprecated alias
        preset = resolve_preset(augment.preset, use_labels)
        if not augment.transforms and "jitter" in PRESET_DEFAULTS[preset]:
            knobs["jitter"] = config.color_jitter
    common = {
        "channels": channels,
        "mean": mean,
        "std": std,
        "interpolation": image_config["interpolation"],
    }
    train = build_augmentation(
        resolve_preset(augment.preset, use_labels),
        size,
        transforms=augment.transforms or None,
        **common,
        **knobs,
    )
    resize = resize or ("full" if config.dataset == "digits" else "crop")
    evaluation = build_eval_transform(
        size, resize=resize, crop_pct=image_config.get("crop_pct", 1.0), **common
    )
    return train, evaluation


def describe_transforms(
    augment: AugmentConfig, resize: str, train: Transform, evaluation: Transform
) -> str:
    """The text of a run's ``augment.txt``: the resolved settings and both pipelines' reprs."""
    from supcon.augment_spec import preset_knobs

    if augment.transforms:
        settings = f"augment.transforms: {list(augment.transforms)}"
    else:
        knobs = preset_knobs(augment.preset or "retrieval", augment.knobs())
        values = ", ".join(
            f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in knobs.items()
        )
        settings = f"augment.preset={augment.preset} ({values or 'no knobs'})"
    return (
        f"# training views: {settings}\n{train!r}\n\n"
        f"# evaluation: eval.resize={resize}\n{evaluation!r}\n"
    )
