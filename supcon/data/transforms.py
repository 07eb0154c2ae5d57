"""Image transforms: SimCLR-style views for training, timm's eval pipeline for embedding.

Sizes, mean/std, crop fraction and interpolation come from timm's ``resolve_data_config`` for
the chosen backbone, so a pretrained model sees inputs the way it was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from timm.data import resolve_data_config
from torch import nn
from torchvision.transforms import InterpolationMode, v2

Transform = Callable[[Any], torch.Tensor]


def resolve_image_config(backbone: nn.Module, image_size: int | None = None) -> dict[str, Any]:
    """timm's data config for ``backbone``, optionally at another square ``image_size``.

    Returns:
        ``{"input_size": (C, H, W), "mean", "std", "crop_pct", "interpolation"}``.
    """
    config = dict(resolve_data_config({}, model=backbone))
    if image_size is not None:
        config["input_size"] = (config["input_size"][0], image_size, image_size)
    return config


def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name)
    except ValueError:
        return InterpolationMode.BILINEAR


def simclr_augmentation(image_config: dict[str, Any], strength: float = 1.0) -> Transform:
    """Random resized crop, flip, colour jitter, grayscale and blur (Chen et al. 2020).

    Args:
        image_config: From :func:`resolve_image_config`.
        strength: Colour-jitter strength ``s`` (SimCLR uses 1.0 on ImageNet, 0.5 on CIFAR).

    Returns:
        PIL image or ``(C, H, W)`` uint8 tensor → normalised ``(C, H, W)`` float tensor.
    """
    size = image_config["input_size"][1:]
    kernel = max(3, (int(0.1 * size[0]) // 2) * 2 + 1)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(
                size,
                scale=(0.2, 1.0),
                interpolation=_interpolation(image_config["interpolation"]),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(),
            v2.RandomApply(
                [v2.ColorJitter(0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)],
                p=0.8,
            ),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(image_config["mean"], image_config["std"]),
        ]
    )


def eval_transform(image_config: dict[str, Any]) -> Transform:
    """Resize to ``size / crop_pct``, centre-crop to ``size``, normalise (timm's eval pipeline).

    Returns:
        PIL image or uint8 tensor → normalised ``(C, H, W)`` float tensor.
    """
    size = image_config["input_size"][1:]
    scale = int(size[0] / image_config.get("crop_pct", 1.0))
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(
                scale, interpolation=_interpolation(image_config["interpolation"]), antialias=True
            ),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(image_config["mean"], image_config["std"]),
        ]
    )


def digit_augmentation(image_size: int) -> Transform:
    """Geometric jitter for small grayscale glyphs (no flips: they change the digit).

    Args:
        image_size: Side length of the input and output images.

    Returns:
        ``(C, H, W)`` float tensor → ``(C, H, W)`` float tensor.
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomAffine(degrees=12, translate=(0.08, 0.08), shear=8),
        ]
    )
