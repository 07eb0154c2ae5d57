"""Bad and unusual image files written to disk, for data-path tests and the faults benchmark."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _encoded(fmt: str, size: int = 32, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated(path: Path) -> Path:
    """A JPEG or PNG (by suffix) cut to half its length."""
    blob = _encoded("PNG" if path.suffix.lower() == ".png" else "JPEG")
    path.write_bytes(blob[: len(blob) // 2])
    return path


def not_an_image(path: Path) -> Path:
    path.write_text("this is a text file named like an image\n")
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(path: Path, side: int = 30_000) -> Path:
    """A tiny file whose PNG header claims ``side × side`` pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    blob = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
    path.write_bytes(blob + _chunk(b"IEND", b""))
    return path


def apple_double(path: Path) -> Path:
    """macOS metadata beside a real file: ``._name.jpg`` (not an image)."""
    path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 64)
    return path


BAD_KINDS = {
    "zero-byte": ("zero.jpg", zero_byte),
    "truncated jpeg": ("cut.jpg", truncated),
    "truncated png": ("cut.png", truncated),
    "text named .jpg": ("text.jpg", not_an_image),
    "huge png header": ("bomb.png", huge_png_header),
}
#: What :func:`supcon.data.sources.load_image` calls each kind.
EXPECTED_KIND = {
    "zero-byte": "zero-byte",
    "truncated jpeg": "truncated or corrupt",
    "truncated png": "truncated or corrupt",
    "text named .jpg": "not an image",
    "huge png header": "too large",
}


def write_bad_files(folder: Path) -> dict[str, Path]:
    """One file of each bad kind in ``folder``; ``{kind: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: make(folder / name) for kind, (name, make) in BAD_KINDS.items()}
