"""Augmentation presets as data: which knobs each preset has, their defaults and valid ranges.

Torch-free, so that config validation (and ``supcon --help``) stays light; the transforms
themselves are built by :mod:`supcon.data.augment`.

Knobs (``null`` in a recipe = the preset's default):

- ``crop_scale`` / ``crop_ratio``: ``RandomResizedCrop`` area fraction and aspect-ratio range.
- ``hflip`` / ``vflip``: flip probabilities.
- ``rotation`` / ``translate`` / ``shear``: ``RandomAffine`` bounds (degrees, fraction of the
  side, degrees).
- ``jitter``: SimCLR colour-jitter strength ``s`` (brightness, contrast, saturation ``0.8 s``,
  hue ``0.2 s``, applied with probability 0.8; 0 = off).
- ``grayscale`` / ``blur``: probabilities of ``RandomGrayscale`` and a Gaussian blur.
- ``num_ops`` / ``magnitude`` / ``num_magnitude_bins`` / ``policy``: torchvision's
  RandAugment, TrivialAugmentWide and AutoAugment settings.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

PRESET_NAMES = (
    "simclr",
    "retrieval",
    "geometric",
    "randaugment",
    "trivialaugment",
    "autoaugment",
    "none",
)

_COLOUR = {"jitter": 0.0, "grayscale": 0.0, "blur": 0.0}
_CROP = {"crop_scale": (0.08, 1.0), "crop_ratio": (3 / 4, 4 / 3), "hflip": 0.5, "vflip": 0.0}

#: Every preset's knobs and their defaults; a knob missing here is not used by that preset.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Chen et al. 2020: heavy crop, flip, strong colour distortion, grayscale, blur.
    "simclr": {
        **_CROP,
        "crop_scale": (0.2, 1.0),
        "jitter": 1.0,
        "grayscale": 0.2,
        "blur": 0.5,
    },
    # The usual metric-learning fine-tuning views: RandomResizedCrop + horizontal flip.
    "retrieval": {**_CROP, **_COLOUR},
    # Glyphs, digits, logos, documents: flips change the class, so none; a mild crop (which
    # also shifts and rescales) and a small rotation. Shift and shear are off: on the symbols
    # and digits benchmarks they cost retrieval quality at every seed (README: Retrieval quality).
    "geometric": {
        "crop_scale": (0.8, 1.0),
        "crop_ratio": (3 / 4, 4 / 3),
        "hflip": 0.0,
        "vflip": 0.0,
        "rotation": 10.0,
        "translate": 0.0,
        "shear": 0.0,
        **_COLOUR,
    },
    # Policies run after a random resized crop and flip (as timm's create_transform does).
    "randaugment": {**_CROP, "num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31},
    "trivialaugment": {**_CROP, "num_magnitude_bins": 31},
    "autoaugment": {**_CROP, "policy": "imagenet"},
    # Only resize to the input size: identical views (useful with labels, or for debugging).
    "none": {},
}

KNOBS = (
    "crop_scale",
    "crop_ratio",
    "hflip",
    "vflip",
    "rotation",
    "translate",
    "shear",
    "jitter",
    "grayscale",
    "blur",
    "num_ops",
    "magnitude",
    "num_magnitude_bins",
    "policy",
)
AUTOAUGMENT_POLICIES = ("imagenet", "cifar10", "svhn")
_PROBABILITIES = ("hflip", "vflip", "grayscale", "blur")


def close_first(name: str, valid: Sequence[str]) -> list[str]:
    """``valid`` with the names closest to ``name`` first (for "did you mean" messages)."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return close + [v for v in valid if v not in close]


def resolve_preset(preset: str | None, use_labels: bool) -> str:
    """The preset a recipe means: ``preset``, or by default ``simclr`` without labels (views
    of one image are the only positives, so they must differ a lot) and ``retrieval`` with."""
    if preset is not None:
        return preset
    return "retrieval" if use_labels else "simclr"


def preset_knobs(preset: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's knob values: its defaults, overridden by the non-null ``given`` ones.

    Args:
        preset: A name in :data:`PRESET_NAMES`.
        given: Knob values (``None`` = default); knobs the preset does not use must be ``None``.

    Returns:
        ``{knob: value}`` for every knob of the preset.
    """
    values = dict(PRESET_DEFAULTS[preset])
    values.update({k: v for k, v in given.items() if v is not None and k in values})
    return values


def _pair_problem(key: str, value: Sequence[float], upper: float | None) -> str | None:
    bound = f"(0, {upper:g}]" if upper is not None else "(0, inf)"
    if len(value) != 2:
        return f"augment.{key} must be two numbers [low, high] in {bound}, got {list(value)}"
    low, high = value
    if not (0 < low <= high and (upper is None or high <= upper)):
        return (
            f"augment.{key} must be [low, high] with 0 < low ≤ high in {bound}, got {list(value)}"
        )
    return None


def check_augment(
    preset: str | None, use_labels: bool, knobs: Mapping[str, Any], has_transforms: bool
) -> list[str]:
    """Problems with an ``augment:`` section (unknown preset, unused knobs, ranges).

    Args:
        preset: ``augment.preset`` as given (``None``: the default for ``use_labels``).
        use_labels: ``loss.use_labels``.
        knobs: ``{knob: value}`` as given (``None`` = preset default).
        has_transforms: ``augment.transforms`` is set (it replaces the preset).

    Returns:
        One line per problem, naming the key and what is valid.
    """
    given = {k: v for k, v in knobs.items() if v is not None}
    if has_transforms:
        problems = []
        if preset is not None:
            problems.append(
                "augment.transforms replaces the preset; remove augment.preset "
                f"({preset!r}) or augment.transforms"
            )
        if given:
            problems.append(
                f"augment.{', augment.'.join(sorted(given))} apply to presets; with "
                "augment.transforms put those settings into the transform list"
            )
        return problems
    if preset is not None and preset not in PRESET_NAMES:
        valid = ", ".join(close_first(preset, PRESET_NAMES))
        return [f"unknown augment.preset {preset!r}; valid presets: {valid}"]
    name = resolve_preset(preset, use_labels)
    problems = []
    unused = sorted(k for k in given if k not in PRESET_DEFAULTS[name])
    if unused:
        own = ", ".join(PRESET_DEFAULTS[name]) or "none"
        why = "" if preset else f" (the default with loss.use_labels={str(use_labels).lower()})"
        problems.append(
            f"augment.{', augment.'.join(unused)} not used by augment.preset={name}{why}; "
            f"its knobs: {own}"
        )
    for key in ("crop_scale", "crop_ratio"):
        if key in given:
            problem = _pair_problem(key, given[key], 1.0 if key == "crop_scale" else None)
            if problem:
                problems.append(problem)
    for key in _PROBABILITIES:
        if key in given and not 0 <= given[key] <= 1:
            problems.append(
                f"augment.{key} is a probability and must be in [0, 1], got {given[key]}"
            )
    ranges = {
        "rotation": (0, 180, "degrees"),
        "shear": (0, 90, "degrees"),
        "translate": (0, 1, "a fraction of the image side"),
        "jitter": (0, 2.5, "the SimCLR colour-jitter strength; hue is 0.2 × it, at most 0.5"),
    }
    for key, (low, high, what) in ranges.items():
        if key in given and not low <= given[key] <= high:
            problems.append(f"augment.{key} ({what}) must be in [{low}, {high}], got {given[key]}")
    bins = given.get("num_magnitude_bins", PRESET_DEFAULTS[name].get("num_magnitude_bins", 31))
    if "num_magnitude_bins" in given and bins < 2:
        problems.append(f"augment.num_magnitude_bins must be ≥ 2, got {bins}")
    if "num_ops" in given and given["num_ops"] < 1:
        problems.append(f"augment.num_ops must be ≥ 1, got {given['num_ops']}")
    if "magnitude" in given and not 0 <= given["magnitude"] < max(bins, 1):
        problems.append(
            f"augment.magnitude must be in [0, num_magnitude_bins - 1 = {bins - 1}], "
            f"got {given['magnitude']}"
        )
    if "policy" in given and given["policy"] not in AUTOAUGMENT_POLICIES:
        valid = ", ".join(close_first(given["policy"], AUTOAUGMENT_POLICIES))
        problems.append(f"unknown augment.policy {given['policy']!r}; valid policies: {valid}")
    return problems
