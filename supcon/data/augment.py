"""Training views from a named preset or a list of torchvision v2 transforms, and the eval
transform (timm's resize + centre crop, or the whole image resized).

Every pipeline takes a PIL image or a ``(C, H, W)`` tensor (uint8, or float in ``[0, 1]``) and
returns a normalised ``(C, size, size)`` float32 tensor. Presets and their knobs are described
in :mod:`supcon.augment_spec`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode, v2

from supcon.augment_spec import PRESET_DEFAULTS, PRESET_NAMES, close_first, preset_knobs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Added around every pipeline, or meaningless for single images (boxes, batches, callables).
_NOT_IN_LISTS = {
    "ToImage",
    "ToDtype",
    "Normalize",
    "ToPILImage",
    "ToPureTensor",
    "ConvertImageDtype",
    "PILToTensor",
    "ToTensor",
    "Lambda",
    "CutMix",
    "MixUp",
    "LinearTransformation",
    "SanitizeBoundingBoxes",
    "ClampBoundingBoxes",
    "ClampKeyPoints",
    "ConvertBoundingBoxFormat",
    "Transform",
    "FiveCrop",
    "TenCrop",
    "RandomIoUCrop",
    "SanitizeKeyPoints",
    "SetClampingMode",
    "UniformTemporalSubsample",
}
_CONTAINERS = {"Compose", "RandomApply", "RandomChoice", "RandomOrder"}


def _interpolation(name: str | InterpolationMode) -> InterpolationMode:
    if isinstance(name, InterpolationMode):
        return name
    try:
        return InterpolationMode(name)
    except ValueError:
        return InterpolationMode.BILINEAR


def normalisation(
    channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` with ``channels`` values each: the given ones, or ImageNet's averaged
    to one value for grayscale.

    Raises:
        ValueError: if a given list does not have ``channels`` values.
    """
    out = []
    for name, given, default in (("mean", mean, IMAGENET_MEAN), ("std", std, IMAGENET_STD)):
        values = tuple(float(v) for v in (default if given is None else given))
        if given is None and len(values) != channels:
            values = (sum(values) / len(values),) * channels
        if len(values) != channels:
            raise ValueError(
                f"data.{name} needs {channels} value(s), one per channel, got {list(values)}"
            )
        out.append(values)
    return out[0], out[1]


def valid_transform_names() -> list[str]:
    """The ``torchvision.transforms.v2`` classes ``augment.transforms`` accepts."""
    return sorted(
        name
        for name, obj in vars(v2).items()
        if inspect.isclass(obj)
        and issubclass(obj, v2.Transform)
        and not name.startswith("_")
        and name not in _NOT_IN_LISTS
    )


def _convert_arg(key: str, value: Any) -> Any:
    if key == "interpolation" and isinstance(value, str):
        return _interpolation(value)
    if key == "policy" and isinstance(value, str):
        return AutoAugmentPolicy(value)
    return value


def _parse_one(spec: Any, where: str) -> v2.Transform:
    args: Any
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        ((name, args),) = spec.items()
        args = {} if args is None else args
    else:
        raise ValueError(
            f"{where} must be a class name or a one-key mapping {{ClassName: {{args}}}}, "
            f"got {spec!r}"
        )
    valid = valid_transform_names()
    if name not in valid:
        hint = (
            " (added automatically around every pipeline)"
            if name in ("ToImage", "ToDtype", "Normalize")
            else ""
        )
        raise ValueError(
            f"{where}: {name!r} is not a usable torchvision.transforms.v2 class{hint}; "
            f"valid: {', '.join(close_first(str(name), valid))}"
        )
    if not isinstance(args, Mapping):
        raise ValueError(f"{where} {name}: arguments must be a mapping, got {args!r}")
    cls = getattr(v2, name)
    params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    args = {k: _convert_arg(k, v) for k, v in args.items()}
    for key in args:
        if key not in params:
            raise ValueError(
                f"{where} {name}: unknown argument {key!r}; valid arguments: "
                f"{', '.join(close_first(key, params)) or 'none'}"
            )
    if name in _CONTAINERS and "transforms" in args:
        inner = args["transforms"]
        if not isinstance(inner, Sequence) or isinstance(inner, str):
            raise ValueError(f"{where} {name}: 'transforms' must be a list of transforms")
        args["transforms"] = [_parse_one(s, f"{where}.{name}[{i}]") for i, s in enumerate(inner)]
    try:
        inspect.signature(cls).bind(**args)
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} {name}: {exc} (its arguments: {', '.join(params)})".replace("\n", " ")
        ) from None


def parse_transforms(specs: Sequence[Any]) -> list[v2.Transform]:
    """Build ``torchvision.transforms.v2`` objects from recipe entries.

    Args:
        specs: Entries ``{ClassName: {arg: value}}`` (or a bare ``ClassName``); ``RandomApply``,
            ``RandomChoice``, ``RandomOrder`` and ``Compose`` take a nested list as
            ``transforms``. String ``interpolation`` / ``policy`` values are converted.

    Returns:
        The transforms, in order.

    Raises:
        ValueError: one line naming the entry and listing the valid classes or arguments
            (closest matches first).
    """
    return [_parse_one(spec, f"augment.transforms[{i}]") for i, spec in enumerate(specs)]


class BorderFillAffine(torch.nn.Module):
    """``v2.RandomAffine`` whose uncovered corners take the image's background colour.

    A rotated or shifted glyph on white paper would otherwise get black wedges (a constant
    fill of 0), an artefact the model learns instead of the shape. The background is the
    median of the image's edge pixels, per channel, so dark-on-light and light-on-dark data
    both come out seamless.

    Args:
        **affine: ``v2.RandomAffine`` arguments (``degrees``, ``translate``, ``shear``,
            ``interpolation``); ``fill`` is chosen per image.
    """

    def __init__(self, **affine: Any) -> None:
        super().__init__()
        self.affine = v2.RandomAffine(**affine)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` uint8 or float image → the same shape and dtype, warped."""
        x = torch.as_tensor(image).float()
        edges = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
        background = edges.median(dim=-1).values[..., None, None]
        out = self.affine(x - background) + background
        if image.dtype == torch.uint8:
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return out.to(image.dtype)

    def extra_repr(self) -> str:
        return "fill=border median"


def _preset_steps(
    preset: str, size: int, interpolation: InterpolationMode, knobs: dict[str, Any]
) -> list[v2.Transform]:
    """The random part of a preset's pipeline (on uint8 or float images)."""
    if preset == "none":
        return [v2.Resize((size, size), interpolation=interpolation, antialias=True)]
    rotation, translate, shear = (knobs.get(k, 0.0) for k in ("rotation", "translate", "shear"))
    if preset == "geometric":  # crop + affine in one warp (PIL); tensors keep the two steps
        from supcon.data.warp import GeometricWarp

        crop = v2.RandomResizedCrop(
            size,
            scale=tuple(knobs["crop_scale"]),
            ratio=tuple(knobs["crop_ratio"]),
            interpolation=interpolation,
            antialias=True,
        )
        two_steps: list[Any] = [v2.ToImage(), crop]
        if rotation or translate or shear:
            two_steps.append(_border_affine(rotation, translate, shear, interpolation))
        warp = GeometricWarp(
            size,
            scale=tuple(knobs["crop_scale"]),
            ratio=tuple(knobs["crop_ratio"]),
            degrees=rotation,
            translate=translate,
            shear=shear,
            interpolation=interpolation,
            tensor_path=v2.Compose(two_steps),
        )
        steps: list[v2.Transform] = [warp, v2.ToImage()]
        rotation = translate = shear = 0.0
    else:
        steps = [
            v2.RandomResizedCrop(
                size,
                scale=tuple(knobs["crop_scale"]),
                ratio=tuple(knobs["crop_ratio"]),
                interpolation=interpolation,
                antialias=True,
            )
        ]
    if rotation or translate or shear:
        steps.append(_border_affine(rotation, translate, shear, interpolation))
    if knobs["hflip"]:
        steps.append(v2.RandomHorizontalFlip(knobs["hflip"]))
    if knobs["vflip"]:
        steps.append(v2.RandomVerticalFlip(knobs["vflip"]))
    strength = knobs.get("jitter", 0.0)
    if strength:
        steps.append(
            v2.RandomApply(
                [v2.ColorJitter(0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)],
                p=0.8,
            )
        )
    if knobs.get("grayscale"):
        steps.append(v2.RandomGrayscale(p=knobs["grayscale"]))
    if knobs.get("blur"):
        kernel = max(3, (int(0.1 * size) // 2) * 2 + 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=knobs["blur"]))
    if preset == "randaugment":
        steps.append(
            v2.RandAugment(
                knobs["num_ops"],
                knobs["magnitude"],
                knobs["num_magnitude_bins"],
                interpolation=interpolation,
            )
        )
    elif preset == "trivialaugment":
        steps.append(
            v2.TrivialAugmentWide(knobs["num_magnitude_bins"], interpolation=interpolation)
        )
    elif preset == "autoaugment":
        steps.append(
            v2.AutoAugment(AutoAugmentPolicy(knobs["policy"]), interpolation=interpolation)
        )
    return steps


def _check_output_size(pipeline: v2.Compose, channels: int, size: int) -> None:
    """Refuse a custom list whose output is not ``(channels, size, size)`` for any input."""
    probe = torch.zeros(channels, size + 7, size + 3, dtype=torch.uint8)
    with torch.random.fork_rng():
        shape = tuple(pipeline(probe).shape)
    if shape != (channels, size, size):
        raise ValueError(
            f"augment.transforms turn a {size + 7}×{size + 3} image into {shape[-2]}×{shape[-1]}, "
            f"but the model takes {size}×{size} (data.image_size); end the list with e.g. "
            f"{{RandomResizedCrop: {{size: {size}}}}} or {{Resize: {{size: [{size}, {size}]}}}}"
        )


def build_augmentation(
    preset: str = "retrieval",
    image_size: int = 224,
    *,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | InterpolationMode = "bilinear",
    transforms: Sequence[Any] | None = None,
    **knobs: Any,
) -> v2.Compose:
    """A training-view pipeline from a preset (or a custom transform list).

    Args:
        preset: One of :data:`supcon.augment_spec.PRESET_NAMES`.
        image_size: Output side length.
        channels: Image channels (1 or 3), for the normalisation defaults and size check.
        mean: Normalisation mean (``channels`` values; ``None``: ImageNet's).
        std: Normalisation std (``channels`` values; ``None``: ImageNet's).
        interpolation: Resampling of crops, affine and policies (``"bilinear"``, ``"bicubic"``).
        transforms: Recipe-style ``[{ClassName: {args}}]`` list used instead of the preset.
        **knobs: The preset's knobs (``crop_scale``, ``hflip``, ...; ``None`` = its default).

    Returns:
        PIL image or ``(C, H, W)`` tensor → normalised ``(C, image_size, image_size)`` float32.

    Raises:
        ValueError: for an unknown preset, a knob the preset does not use, an out-of-range
            value, or a bad transform list.
    """
    from supcon.augment_spec import check_augment

    mean, std = normalisation(channels, mean, std)
    if transforms:
        problems = check_augment(None, True, knobs, has_transforms=True)
    else:
        problems = check_augment(preset, True, knobs, has_transforms=False)
    if problems:
        raise ValueError("; ".join(problems))
    if transforms:
        steps = parse_transforms(transforms)
    else:
        if preset not in PRESET_DEFAULTS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESET_NAMES)}")
        values = preset_knobs(preset, knobs)
        steps = _preset_steps(preset, image_size, _interpolation(interpolation), values)
    from supcon.data.warp import GeometricWarp, ToNormalizedTensor

    # uint8 from PIL; float tensors (the digits) stay float. A leading GeometricWarp takes the
    # PIL image itself (one PIL warp) and converts it after; alone, with one fused conversion.
    if len(steps) == 2 and isinstance(steps[0], GeometricWarp):
        pipeline = v2.Compose([steps[0], ToNormalizedTensor(mean, std)])
    else:
        first = [] if steps and isinstance(steps[0], GeometricWarp) else [v2.ToImage()]
        pipeline = v2.Compose(
            [*first, *steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        )
    if transforms:
        _check_output_size(pipeline, channels, image_size)
    return pipeline


def build_eval_transform(
    image_size: int,
    *,
    resize: str = "crop",
    crop_pct: float = 0.875,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | InterpolationMode = "bilinear",
) -> v2.Compose:
    """The deterministic transform for embedding.

    Args:
        image_size: Output side length.
        resize: ``"crop"`` (resize the short side to ``image_size / crop_pct``, centre-crop:
            timm's eval pipeline) or ``"full"`` (resize the whole image to the square, so its
            edges are kept).
        crop_pct: Crop fraction for ``"crop"``.
        channels: Image channels (normalisation defaults).
        mean: Normalisation mean (``None``: ImageNet's).
        std: Normalisation std (``None``: ImageNet's).
        interpolation: Resampling mode.

    Returns:
        PIL image or ``(C, H, W)`` tensor → normalised ``(C, image_size, image_size)`` float32.
    """
    if resize not in ("crop", "full"):
        raise ValueError(f"eval.resize must be 'crop' or 'full', got {resize!r}")
    mean, std = normalisation(channels, mean, std)
    mode = _interpolation(interpolation)
    if resize == "full":
        sizing = [v2.Resize((image_size, image_size), interpolation=mode, antialias=True)]
    else:
        sizing = [
            v2.Resize(int(image_size / crop_pct), interpolation=mode, antialias=True),
            v2.CenterCrop(image_size),
        ]
    return v2.Compose(
        [v2.ToImage(), *sizing, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )


def _border_affine(
    rotation: float, translate: float, shear: float, interpolation: InterpolationMode
) -> BorderFillAffine:
    """The affine jitter of the geometric knobs, corners filled with the border median."""
    return BorderFillAffine(
        degrees=rotation,
        translate=(translate, translate) if translate else None,
        shear=shear or None,
        # Tensor warps support only nearest / bilinear (timm models often say bicubic).
        interpolation=interpolation
        if interpolation == InterpolationMode.NEAREST
        else InterpolationMode.BILINEAR,
    )
