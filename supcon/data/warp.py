"""The ``geometric`` preset's crop and affine jitter as one warp per image.

A random resized crop followed by a random affine resamples the image twice; on small images
it is also the costliest part of the data pipeline (two tensor warps and a median per image).
:class:`GeometricWarp` draws the same kinds of parameters, composes them into one affine map
and applies it to a PIL image with a single ``Image.transform`` (one interpolation; corners
filled with the image's border median, as :class:`supcon.data.augment.BorderFillAffine` does).
Tensor inputs (in-memory data such as the digits) keep the two-step torchvision path.

All randomness comes from torch's global generator, so the per-sample seeds of
:class:`supcon.data.views.MultiViewDataset` make every view reproducible (and ``--resume``
exact).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode

_PIL_MODES = {"L": 1, "RGB": 3}
_PIL_RESAMPLE = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
}


def warp_matrix(
    size: int,
    box: tuple[float, float, float, float],
    angle: float,
    shift: tuple[float, float],
    shear: float,
) -> tuple[float, float, float, float, float, float]:
    """The map from output to input pixel coordinates (the coefficients PIL's AFFINE takes).

    The crop ``box = (left, top, box_width, box_height)`` of the input is stretched onto the
    ``size × size`` output, then rotated by ``angle`` degrees and sheared along x by ``shear``
    degrees about the output's centre, and shifted by ``shift`` pixels. Coordinates are
    continuous: pixel ``i`` covers ``[i, i + 1)``.

    Args:
        size: Output side length.
        box: Crop rectangle in input pixels.
        angle: Rotation in degrees.
        shift: ``(dx, dy)`` translation of the output in pixels.
        shear: x-shear angle in degrees.

    Returns:
        ``(a, b, c, d, e, f)`` with ``x_in = a·u + b·v + c`` and ``y_in = d·u + e·v + f`` for
        the output point ``(u, v)``.
    """
    left, top, box_w, box_h = box
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    tan = math.tan(math.radians(shear))
    # forward = rotation @ [[1, tan], [0, 1]]; its inverse (determinant 1):
    # [[1, -tan], [0, 1]] @ [[cos, sin], [-sin, cos]].
    i00, i01 = cos + tan * sin, sin - tan * cos
    i10, i11 = -sin, cos
    # p = inverse @ (u - centre - shift) + centre in the cropped frame; input = box origin +
    # p · box / size.
    half = size / 2.0
    qx, qy = -half - shift[0], -half - shift[1]
    px, py = i00 * qx + i01 * qy + half, i10 * qx + i11 * qy + half
    sx, sy = box_w / size, box_h / size
    return (sx * i00, sx * i01, left + sx * px, sy * i10, sy * i11, top + sy * py)


def border_median(image: Image.Image) -> int | tuple[int, ...]:
    """Median of the edge pixels of a PIL ``L`` / ``RGB`` image, per channel (the lower
    middle value for an even count, as ``torch.median`` and BorderFillAffine take it)."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]], axis=0)
    middle = (edges.shape[0] - 1) // 2
    values = np.partition(edges, middle, axis=0)[middle]
    return int(values[0]) if values.shape[0] == 1 else tuple(int(v) for v in values)


class GeometricWarp(torch.nn.Module):
    """Random resized crop + random affine with border-median fill, fused for PIL images.

    Args:
        size: Output side length.
        scale: Crop area as a fraction of the image, ``(low, high)``.
        ratio: Crop aspect ratio (width / height), ``(low, high)``, drawn log-uniformly.
        degrees: Rotation drawn from ``[-degrees, degrees]``.
        translate: Shift drawn from ``[-translate, translate]`` × size, per axis.
        shear: x-shear angle drawn from ``[-shear, shear]`` degrees.
        interpolation: Resampling mode.

        tensor_path: Transform for every other input (the preset passes torchvision's
            ``RandomResizedCrop`` + :class:`~supcon.data.augment.BorderFillAffine`).

    Inputs are PIL images (``L`` or ``RGB``: one warp, returns a PIL image of ``size²``) or,
    through ``tensor_path``, anything else.
    """

    def __init__(
        self,
        size: int,
        *,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        degrees: float = 0.0,
        translate: float = 0.0,
        shear: float = 0.0,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        tensor_path: Any = None,
    ) -> None:
        super().__init__()
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.degrees, self.translate, self.shear = float(degrees), float(translate), float(shear)
        self.interpolation = interpolation
        self.tensor_path = tensor_path

    def sample(
        self, width: int, height: int
    ) -> tuple[tuple[float, float, float, float], float, tuple[float, float], float]:
        """Draw ``(box, angle, shift, shear)`` for a ``width × height`` image (one call to
        torch's generator)."""
        u = torch.rand(8, dtype=torch.float64).tolist()
        lerp = lambda k, low, high: low + (high - low) * u[k]  # noqa: E731
        area = width * height * lerp(0, *self.scale)
        ratio = math.exp(lerp(1, math.log(self.ratio[0]), math.log(self.ratio[1])))
        box_w = min(float(width), math.sqrt(area * ratio))
        box_h = min(float(height), math.sqrt(area / ratio))
        box = (lerp(2, 0.0, width - box_w), lerp(3, 0.0, height - box_h), box_w, box_h)
        limit = self.translate * self.size
        shift = (lerp(5, -limit, limit), lerp(6, -limit, limit))
        return box, lerp(4, -self.degrees, self.degrees), shift, lerp(7, -self.shear, self.shear)

    def forward(self, image: Any) -> Any:
        """PIL image → warped PIL image of ``size²``; other inputs → ``(C, size, size)`` tensor."""
        if not isinstance(image, Image.Image) or image.mode not in _PIL_MODES:
            if self.tensor_path is None:
                raise TypeError(
                    f"GeometricWarp warps PIL 'L' or 'RGB' images, got {type(image).__name__}; "
                    "pass tensor_path for other inputs"
                )
            return self.tensor_path(image)
        box, angle, shift, shear = self.sample(*image.size)
        source = image
        factor = min(box[2], box[3]) / self.size
        if factor > 2.0:  # a much larger crop: shrink first (antialiased) so the warp won't alias
            width, height = image.size
            shrunk = (max(1, round(width / factor)), max(1, round(height / factor)))
            source = image.resize(shrunk, Image.Resampling.BILINEAR)
            fx, fy = shrunk[0] / width, shrunk[1] / height
            box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        return source.transform(
            (self.size, self.size),
            Image.Transform.AFFINE,
            warp_matrix(self.size, box, angle, shift, shear),
            resample=_PIL_RESAMPLE.get(self.interpolation, Image.Resampling.BILINEAR),
            fillcolor=border_median(image),
        )

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={self.scale}, ratio={self.ratio}, degrees={self.degrees}, "
            f"translate={self.translate}, shear={self.shear}, "
            f"interpolation={self.interpolation.value}, fill=border median, one PIL warp"
        )


class ToNormalizedTensor(torch.nn.Module):
    """``ToImage`` → ``ToDtype(float32, scale=True)`` → ``Normalize`` in one step.

    Calls the same torchvision kernels (so the result is bit-identical) without the per-
    transform dispatch of three ``v2`` transforms, which costs more than the warp itself on a
    32×32 image.

    Args:
        mean: Per-channel mean.
        std: Per-channel standard deviation.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.mean, self.std = list(mean), list(std)

    def forward(self, image: Any) -> torch.Tensor:
        """PIL image or ``(C, H, W)`` tensor (uint8, or float in ``[0, 1]``) → normalised
        ``(C, H, W)`` float32 tensor."""
        from torchvision.transforms.v2 import functional as F

        if isinstance(image, Image.Image):
            image = F.pil_to_tensor(image)
        tensor = F.to_dtype_image(torch.as_tensor(image), torch.float32, scale=True)
        return F.normalize_image(tensor, self.mean, self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
