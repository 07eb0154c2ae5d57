"""Image loading: every Pillow mode with correct values, upright, and bad files told apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from supcon.data.sources import BadImageError, load_image
from supcon.data.verify import check_images
from tests.badfiles import EXPECTED_KIND, write_bad_files


def _pixels(path: Path, mode: str = "RGB") -> np.ndarray:
    return np.asarray(load_image(str(path), mode), dtype=np.int64)


def test_16_bit_grayscale_is_scaled_to_8_bits(tmp_path: Path) -> None:
    values = np.concatenate([np.arange(256) * 257, [1000, 40000, 65535, 0]]).astype(np.uint16)
    grid = values.reshape(20, 13)
    Image.fromarray(grid).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    Image.fromarray(grid.astype(np.int32)).save(tmp_path / "g32.tif")
    assert Image.open(tmp_path / "g32.tif").mode == "I"
    expected = np.rint(grid / 257.0).astype(np.int64)
    for name in ("g16.png", "g32.tif"):
        np.testing.assert_array_equal(_pixels(tmp_path / name, "L"), expected)
        rgb = _pixels(tmp_path / name)
        assert rgb.shape == (20, 13, 3)
        np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    got = _pixels(tmp_path / "p.png")
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])  # index 0 is transparent
    np.testing.assert_array_equal(got[0, 1], [200, 100, 50])
    np.testing.assert_array_equal(got[1, 0], [0, 0, 255])


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    alpha = np.array([[0, 64, 128, 255]], dtype=np.float64)
    colour = np.array([100, 30, 220]) if mode == "RGBA" else np.array([100])
    layers = [np.full((1, 4), c, np.uint8) for c in colour] + [alpha.astype(np.uint8)]
    Image.fromarray(np.stack(layers, axis=2), mode).save(tmp_path / "a.png")
    got = _pixels(tmp_path / "a.png")
    rgb = np.broadcast_to(colour, 3) if mode == "RGBA" else np.repeat(colour, 3)
    a = alpha[0][:, None] / 255.0
    expected = rgb[None, :] * a + 255.0 * (1 - a)
    np.testing.assert_allclose(got[0], expected, atol=1.0)


def test_cmyk_jpeg_keeps_its_colour(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 40, 60)
    rgb[:, 8:] = (30, 160, 90)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    got = _pixels(tmp_path / "c.jpg")
    np.testing.assert_allclose(got[4:12, 2:6].mean(axis=(0, 1)), [200, 40, 60], atol=8)
    np.testing.assert_allclose(got[4:12, 10:14].mean(axis=(0, 1)), [30, 160, 90], atol=8)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)  # 20 wide, 10 high: left half red, right half blue
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    got = _pixels(tmp_path / "r.jpg")
    assert got.shape == (20, 10, 3)  # upright: 10 wide, 20 high, the left half now on top
    np.testing.assert_allclose(got[2:8].mean(axis=(0, 1)), [255, 0, 0], atol=12)
    np.testing.assert_allclose(got[12:18].mean(axis=(0, 1)), [0, 0, 255], atol=12)


def test_bad_files_are_told_apart(tmp_path: Path) -> None:
    files = write_bad_files(tmp_path)
    for name, path in files.items():
        with pytest.raises(BadImageError) as caught:
            load_image(str(path))
        assert caught.value.kind == EXPECTED_KIND[name], name
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(good)
    found = check_images([str(good), *map(str, files.values())], workers=2)
    assert [b.path for b in found] == [str(p) for p in files.values()]
    assert [b.kind for b in found] == [EXPECTED_KIND[n] for n in files]


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(path)
    with pytest.raises(BadImageError, match="576 pixels, over the limit of 575") as caught:
        load_image(str(path), max_pixels=575)
    assert caught.value.kind == "too large"
    assert load_image(str(path), max_pixels=576).size == (24, 24)


def test_a_directory_or_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadImageError) as caught:
        load_image(str(tmp_path / "nope.jpg"))
    assert caught.value.kind == "unreadable"


def test_a_bad_file_in_a_dataloader_worker_is_still_one_line(tmp_path: Path) -> None:
    import torch

    from supcon.data.sources import FileSplit

    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    split = FileSplit((str(good), str(empty)), np.zeros(2, np.int64), ())

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(split)

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(np.asarray(split.load(i))).float()

    loader = torch.utils.data.DataLoader(Items(), batch_size=1, num_workers=1)
    with pytest.raises(BadImageError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message and caught.value.kind == "zero-byte"
    assert message == f"cannot read image {str(empty)!r}: zero-byte (the file is empty)"
