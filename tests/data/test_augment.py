"""Augmentation presets, their knobs, custom transform lists and the eval transform."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from supcon.augment_spec import PRESET_DEFAULTS, PRESET_NAMES
from supcon.data import build_augmentation, build_eval_transform, parse_transforms


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Identity normalisation: outputs are pixel values in [0, 1], easy to compare with inputs.
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
WHOLE = {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0]}  # the crop keeps the whole image


def rgb(size: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_gives_normalised_float_views_of_the_input_size(preset: str) -> None:
    torch.manual_seed(0)
    color = build_augmentation(preset, 20, channels=3)
    gray = build_augmentation(preset, 20, channels=1, mean=(0.5,), std=(0.25,))
    for _ in range(5):
        out = color(rgb(31))
        assert out.shape == (3, 20, 20) and out.dtype == torch.float32
        out = gray(torch.rand(1, 16, 16))  # the digits: float tensors in [0, 1]
        assert out.shape == (1, 20, 20) and out.dtype == torch.float32
        assert out.min() >= -2.0 - 1e-6 and out.max() <= 2.0 + 1e-6  # (x - .5) / .25, x in [0, 1]


def test_hflip_probability_reaches_the_flip() -> None:
    image = rgb()
    plain = as_tensor(image)
    never = build_augmentation("retrieval", 24, hflip=0.0, **WHOLE, **PLAIN)
    always = build_augmentation("retrieval", 24, hflip=1.0, **WHOLE, **PLAIN)
    for _ in range(10):
        torch.testing.assert_close(never(image), plain, atol=1 / 255, rtol=0)
        torch.testing.assert_close(always(image), plain.flip(-1), atol=1 / 255, rtol=0)


def dot_angle(image: torch.Tensor) -> float:
    """Angle in degrees (counter-clockwise) of the brightness centroid around the centre."""
    weights = image[0].clamp(min=0)
    rows, cols = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    r = (weights * rows).sum() / weights.sum()
    c = (weights * cols).sum() / weights.sum()
    return math.degrees(math.atan2(-(r - 16).item(), (c - 16).item()))


def test_rotation_stays_within_its_bound_and_uses_it() -> None:
    pixels = np.zeros((33, 33, 3), dtype=np.uint8)
    pixels[15:18, 27:30] = 255  # a dot right of the centre: angle 0
    image = Image.fromarray(pixels)
    pipeline = build_augmentation(
        "geometric", 33, rotation=10.0, translate=0.0, shear=0.0, **WHOLE, **PLAIN
    )
    angles = [dot_angle(pipeline(image)) for _ in range(40)]
    assert max(abs(a) for a in angles) <= 10.5
    assert min(angles) < -6 and max(angles) > 6


@pytest.mark.parametrize("paper, ink", [(230, 20), (10, 240)])
def test_affine_corners_take_the_background_not_black(paper: int, ink: int) -> None:
    pixels = np.full((33, 33), paper, dtype=np.uint8)
    pixels[12:21, 12:21] = ink  # a glyph on paper (dark on light, or light on dark)
    image = Image.fromarray(pixels)
    pipeline = build_augmentation(
        "geometric", 33, channels=1, mean=(0.0,), std=(1.0,), rotation=40.0, translate=0.2,
        shear=0.0, **WHOLE,
    )  # fmt: skip
    torch.manual_seed(0)
    for _ in range(10):
        view = pipeline(image)[0]
        corners = torch.stack([view[0, 0], view[0, -1], view[-1, 0], view[-1, -1]])
        assert torch.allclose(corners, torch.tensor(paper / 255), atol=0.01)  # no black wedges
        assert (view - ink / 255).abs().min() < 0.01  # the glyph is still there


def test_crop_scale_sets_the_cropped_area() -> None:
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))  # value = 4 × column
    image = Image.fromarray(np.stack([ramp] * 3, axis=-1))
    pipeline = build_augmentation(
        "retrieval", 64, crop_scale=[0.25, 0.25], crop_ratio=[1.0, 1.0], hflip=0.0, **PLAIN
    )
    for _ in range(10):
        out = pipeline(image)[0] * 255
        span = (out[:, -1] - out[:, 0]).mean().item() / 4  # columns the crop covered
        assert 29 <= span <= 33  # a 32×32 crop: a quarter of the area


def test_unused_knob_and_unknown_preset_are_refused() -> None:
    with pytest.raises(ValueError, match="augment.rotation not used by augment.preset=retrieval"):
        build_augmentation("retrieval", 24, rotation=5.0)
    with pytest.raises(ValueError, match="valid presets: geometric"):
        build_augmentation("geometrc", 24)
    with pytest.raises(ValueError, match=r"augment.crop_scale .* \(0, 1\]"):
        build_augmentation("simclr", 24, crop_scale=[0.5, 1.5])


def test_preset_defaults_are_the_documented_pipelines() -> None:
    simclr = repr(build_augmentation("simclr", 32))
    assert "scale=(0.2, 1.0)" in simclr and "ColorJitter" in simclr and "GaussianBlur" in simclr
    geometric = repr(build_augmentation("geometric", 32))
    assert "Flip" not in geometric and "RandomAffine" in geometric
    retrieval = repr(build_augmentation("retrieval", 32))
    assert "RandomHorizontalFlip(p=0.5)" in retrieval and "ColorJitter" not in retrieval
    assert set(PRESET_DEFAULTS) == set(PRESET_NAMES)


def test_custom_transform_list_with_nesting_replaces_the_preset() -> None:
    specs = [
        {"RandomResizedCrop": {"size": 16, "scale": [0.6, 1.0], "interpolation": "bicubic"}},
        {"RandomApply": {"transforms": [{"ColorJitter": {"brightness": 0.4}}], "p": 0.5}},
        "RandomVerticalFlip",
    ]
    pipeline = build_augmentation(image_size=16, transforms=specs)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == [
        "ToImage",
        "RandomResizedCrop",
        "RandomApply",
        "RandomVerticalFlip",
        "ToDtype",
        "Normalize",
    ]
    assert pipeline(rgb(40)).shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([{"RandomRotate": {"degrees": 5}}], r"'RandomRotate' is not .*; valid: RandomRotation"),
        (
            [{"RandomRotation": {"degree": 5}}],
            r"unknown argument 'degree'; valid arguments: degrees",
        ),
        ([{"RandomRotation": {"degrees": -5}}], r"transforms\[0\] RandomRotation: .*positive"),
        ([{"RandomRotation": {}}], r"RandomRotation: missing a required argument: 'degrees'"),
        ([{"Normalize": {"mean": [0.5], "std": [0.5]}}], "added automatically"),
        (
            [{"RandomApply": {"transforms": [{"Blur": {}}]}}],
            r"transforms\[0\].RandomApply\[0\]: 'Blur'",
        ),
        ([["RandomRotation"]], "one-key mapping"),
    ],
)
def test_bad_transform_lists_say_what_is_valid(specs: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_transforms(specs)


def test_custom_list_must_end_at_the_input_size() -> None:
    with pytest.raises(ValueError, match=r"model takes 16×16 .*RandomResizedCrop: \{size: 16\}"):
        build_augmentation(image_size=16, transforms=[{"RandomRotation": {"degrees": 5}}])


def corner_image() -> Image.Image:
    """A black 40×40 image with white 4×4 corners."""
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    for rows in (slice(0, 4), slice(-4, None)):
        for cols in (slice(0, 4), slice(-4, None)):
            pixels[rows, cols] = 255
    return Image.fromarray(pixels)


def test_eval_resize_full_keeps_the_corners_and_crop_cuts_them() -> None:
    full = build_eval_transform(20, resize="full", **PLAIN)(corner_image())
    crop = build_eval_transform(20, resize="crop", crop_pct=0.5, **PLAIN)(corner_image())
    assert full.shape == crop.shape == (3, 20, 20)
    for row, col in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert full[:, row, col].min() > 0.9
    assert crop.max() == 0  # (resized to 40) the centre 20×20: the corners are gone


def test_mean_and_std_overrides_normalise_per_channel() -> None:
    image = rgb()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = build_eval_transform(24, resize="full", mean=mean, std=std)(image)
    expected = (as_tensor(image) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
        :, None, None
    ]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"data.mean needs 1 value"):
        build_eval_transform(24, channels=1, mean=(0.1, 0.2, 0.3))


def test_channels_decide_how_images_are_read(tmp_path) -> None:
    from supcon.config import DataConfig
    from supcon.data import load_splits
    from tests.images import make_image_folder

    train, _ = load_splits(DataConfig(dataset="digits", channels=3), 0)
    assert train.load(0).shape == (3, 16, 16)
    assert torch.equal(train.load(0)[0], train.load(0)[2])
    gray, _ = load_splits(DataConfig(dataset="digits"), 0)
    assert gray.load(0).shape == (1, 16, 16)
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4)
    files, _ = load_splits(DataConfig(dataset="folder", root=str(folder), channels=1), 0)
    assert files.load(0).mode == "L"
    files, _ = load_splits(DataConfig(dataset="folder", root=str(folder)), 0)
    assert files.load(0).mode == "RGB"


def test_data_mean_std_and_channels_reach_both_pipelines() -> None:
    import timm

    from supcon.config import AugmentConfig, DataConfig
    from supcon.data import build_transforms

    backbone = timm.create_model("test_resnet", num_classes=0)
    data = DataConfig(dataset="folder", root="x", channels=1, mean=(0.3,), std=(0.2,))
    train, evaluation = build_transforms(data, backbone, AugmentConfig(preset="none"))
    image = Image.fromarray(np.full((24, 24), 153, dtype=np.uint8), mode="L")  # 0.6
    for pipeline in (train, evaluation):
        out = pipeline(image)
        assert out.shape[0] == 1
        torch.testing.assert_close(out, torch.full_like(out, (0.6 - 0.3) / 0.2))
    default = DataConfig(dataset="folder", root="x", channels=1)
    _, evaluation = build_transforms(default, backbone)
    timm_mean = sum(backbone.pretrained_cfg["mean"]) / 3  # averaged for one channel
    timm_std = sum(backbone.pretrained_cfg["std"]) / 3
    out = evaluation(image)
    torch.testing.assert_close(out, torch.full_like(out, (0.6 - timm_mean) / timm_std))
