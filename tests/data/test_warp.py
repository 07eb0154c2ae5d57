"""GeometricWarp: the geometric preset's crop + affine as one PIL warp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from supcon.data import build_augmentation
from supcon.data.augment import BorderFillAffine
from supcon.data.views import MultiViewDataset
from supcon.data.warp import GeometricWarp, ToNormalizedTensor, border_median, warp_matrix


def reference_matrix(size, box, angle, shift, shear) -> np.ndarray:
    """Output → input map by composing homogeneous 3×3 matrices in float64 and inverting."""
    left, top, w, h = box
    crop = np.array([[size / w, 0, -left * size / w], [0, size / h, -top * size / h], [0, 0, 1]])
    t, s = math.radians(angle), math.radians(shear)
    rotate = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    skew = np.array([[1, math.tan(s), 0], [0, 1, 0], [0, 0, 1]])
    c = size / 2
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    back = np.array([[1, 0, c + shift[0]], [0, 1, c + shift[1]], [0, 0, 1]])
    forward = back @ rotate @ skew @ to_centre @ crop  # input → output
    return np.linalg.inv(forward)[:2].ravel()


@pytest.mark.parametrize(
    "box, angle, shift, shear",
    [
        ((0, 0, 32, 32), 0.0, (0, 0), 0.0),
        ((3.5, 1.25, 20, 26), 0.0, (0, 0), 0.0),
        ((0, 0, 32, 32), 30.0, (2, -3), 0.0),
        ((4, 2, 25, 22), -11.0, (1.5, 2.5), 7.0),
    ],
)
def test_warp_matrix_matches_composed_homogeneous_matrices(box, angle, shift, shear) -> None:
    got = np.array(warp_matrix(32, box, angle, shift, shear))
    np.testing.assert_allclose(got, reference_matrix(32, box, angle, shift, shear), atol=1e-12)


def glyph(paper: int = 220, ink: int = 30, size: int = 32) -> Image.Image:
    pixels = np.full((size, size), paper, dtype=np.uint8)
    pixels[8:24, 14:18] = ink
    pixels[8:12, 10:22] = ink
    return Image.fromarray(pixels)


def test_whole_image_and_no_affine_is_the_identity() -> None:
    image = glyph()
    warp = GeometricWarp(32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert np.array_equal(np.asarray(warp(image)), np.asarray(image))


def test_a_dot_lands_where_the_matrix_sends_it() -> None:
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[5, 20] = 255  # pixel centre (20.5, 5.5)
    image = Image.fromarray(pixels)
    warp = GeometricWarp(
        32, scale=(0.6, 0.6), ratio=(1.0, 1.0), degrees=20, translate=0.1, shear=5,
        interpolation=InterpolationMode.NEAREST,
    )  # fmt: skip
    torch.manual_seed(1)
    box, angle, shift, shear = warp.sample(32, 32)
    torch.manual_seed(1)
    out = np.asarray(warp(image)).astype(float)
    a, b, c, d, e, f = warp_matrix(32, box, angle, shift, shear)
    # Solve the map for the output point whose input is the dot's centre.
    u, v = np.linalg.solve(np.array([[a, b], [d, e]]), np.array([20.5 - c, 5.5 - f]))
    rows, cols = np.nonzero(out)
    assert len(rows) >= 1
    assert abs(cols.mean() + 0.5 - u) <= 1.0 and abs(rows.mean() + 0.5 - v) <= 1.0


@pytest.mark.parametrize("paper, ink", [(230, 20), (10, 240)])
def test_uncovered_corners_take_the_border_median(paper: int, ink: int) -> None:
    image = glyph(paper, ink)
    assert border_median(image) == paper
    warp = GeometricWarp(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=45, translate=0.2)
    torch.manual_seed(0)
    for _ in range(10):
        out = np.asarray(warp(image))
        assert {int(out[0, 0]), int(out[0, -1]), int(out[-1, 0]), int(out[-1, -1])} == {paper}
        assert np.abs(out.astype(int) - ink).min() <= 2  # the glyph is still there


def test_border_median_is_torchs_lower_median_per_channel() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    expected = tuple(int(torch.from_numpy(edges[:, k].copy()).median()) for k in range(3))
    assert border_median(Image.fromarray(pixels)) == expected


def test_crop_area_and_ratio_stay_in_range() -> None:
    warp = GeometricWarp(32, scale=(0.3, 0.5), ratio=(0.5, 2.0))
    torch.manual_seed(0)
    for _ in range(200):
        (left, top, w, h), *_ = warp.sample(40, 30)
        assert left >= 0 and left + w <= 40 + 1e-9 and top >= 0 and top + h <= 30 + 1e-9
        assert w * h <= 0.5 * 1200 + 1e-6  # clamping to the image only shrinks the box
        if w < 40 and h < 30:
            assert w * h >= 0.3 * 1200 - 1e-6 and 0.5 - 1e-9 <= w / h <= 2.0 + 1e-9


def test_same_seed_same_view_and_resume_exact_dataset_items() -> None:
    class Split:
        labels = np.zeros(3, dtype=np.int64)
        class_names = ("a",)
        is_query = is_gallery = None

        def __len__(self) -> int:
            return 3

        def load(self, index: int) -> Image.Image:
            return glyph(200 + index, 20)

    pipeline = build_augmentation("geometric", 32, channels=1)
    first = MultiViewDataset(Split(), pipeline, views=2, seed=7)
    again = MultiViewDataset(Split(), pipeline, views=2, seed=7)
    torch.manual_seed(123)  # the global stream must not matter
    a = first[(3, 1)][0]
    torch.manual_seed(999)
    b = again[(3, 1)][0]
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert not torch.equal(a, first[(4, 1)][0])  # another epoch, other views


@pytest.mark.parametrize(
    ("knobs", "crop", "affine"),
    [
        (  # the preset's defaults: mild crop, rotation only
            {},
            {"scale": (0.8, 1.0), "ratio": (3 / 4, 4 / 3)},
            {"degrees": 10.0},
        ),
        (
            {"crop_scale": (0.7, 1.0), "crop_ratio": (0.8, 1.25), "rotation": 12.0,
             "translate": 0.08, "shear": 8.0},
            {"scale": (0.7, 1.0), "ratio": (0.8, 1.25)},
            {"degrees": 12.0, "translate": (0.08, 0.08), "shear": 8.0},
        ),
    ],
)  # fmt: skip
def test_tensor_inputs_keep_the_two_step_torchvision_path_bit_for_bit(
    knobs: dict, crop: dict, affine: dict
) -> None:
    image = torch.rand(1, 16, 16)  # the digits: in-memory float tensors
    new = build_augmentation("geometric", 16, channels=1, **knobs)
    old = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(16, **crop, antialias=True),
            BorderFillAffine(**affine, interpolation=InterpolationMode.BILINEAR),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(new.transforms[-1].mean, new.transforms[-1].std),
        ]
    )
    for seed in range(5):
        torch.manual_seed(seed)
        got = new(image)
        torch.manual_seed(seed)
        assert torch.equal(got, old(image))


def test_large_images_are_reduced_before_the_warp_without_aliasing() -> None:
    stripes = np.zeros((256, 256), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: a plain point-sampled warp aliases them
    warp = GeometricWarp(32, scale=(0.9, 0.9), ratio=(1.0, 1.0), degrees=5)
    torch.manual_seed(0)
    for _ in range(5):
        out = np.asarray(warp(Image.fromarray(stripes))).astype(float)
        assert out.shape == (32, 32)
        assert np.abs(out - 127.5).max() <= 8  # averaged to grey, not stripes


def test_fused_conversion_is_bit_identical_to_the_three_torchvision_steps() -> None:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (9, 7), dtype=np.uint8))
    colour = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    for image, mean, std in (
        (gray, (0.449,), (0.226,)),
        (colour, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        (torch.rand(1, 5, 5), (0.5,), (0.25,)),  # float tensors in [0, 1] (the digits)
        (torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8), (0.1, 0.2, 0.3), (1.0, 2.0, 3.0)),
    ):
        three = v2.Compose(
            [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        )
        got = ToNormalizedTensor(mean, std)(image)
        assert got.dtype == torch.float32 and torch.equal(
            got, three(image).as_subclass(torch.Tensor)
        )


def test_geometric_with_a_flip_keeps_the_general_pipeline() -> None:
    pipeline = build_augmentation("geometric", 32, channels=1, hflip=1.0, rotation=0.0,
                                  translate=0.0, shear=0.0, crop_scale=[1.0, 1.0],
                                  crop_ratio=[1.0, 1.0], mean=(0.0,), std=(1.0,))  # fmt: skip
    image = glyph()
    expected = torch.from_numpy(np.asarray(image)[:, ::-1].copy()).float()[None] / 255
    torch.testing.assert_close(pipeline(image), expected, atol=1e-6, rtol=0)
    assert "RandomHorizontalFlip" in repr(pipeline)


def test_other_inputs_need_a_tensor_path() -> None:
    with pytest.raises(TypeError, match="pass tensor_path"):
        GeometricWarp(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))(torch.rand(1, 8, 8))
