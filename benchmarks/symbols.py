"""A generated class-disjoint retrieval task of small grayscale symbols (no download).

    python benchmarks/symbols.py OUT_DIR [--train-classes 40] [--test-classes 20] [--per-class 50]

Each class is one glyph — Latin, Greek and Cyrillic letters, digits, mathematical and other
symbols — rendered with the TrueType fonts matplotlib ships (DejaVu Sans / Serif / Mono and
STIX, upright, bold and oblique). Every image draws a font that has the glyph, a size, an
affine transform (rotation, shear, anisotropic scale, translation), a stroke-width change, ink
and paper grey levels, blur and pixel noise, then is reduced to a small square: an
Omniglot-like family in which classes differ only by shape. Glyphs that look alike once
scale is free (``o``/``O``/``0``/``ο``/``о``, ``c``/``C``, …) are dropped before classes are
drawn, so no two classes share a shape. The training and test classes are disjoint.

Output: ``OUT_DIR/train/<class>/<i>.png`` and ``OUT_DIR/test/<class>/<i>.png`` (what
``data.dataset=folder`` reads as a ready-made split) and ``OUT_DIR/manifest.csv`` with columns
``path,label,split`` (``data.dataset=csv``). Deterministic for a given seed and font set.
"""

from __future__ import annotations

import argparse
import csv
import math
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)
MIN_FONTS = 4  # a glyph becomes a class only if at least this many fonts draw it
SIMILARITY_LIMIT = 0.85  # cosine of ink-normalised renders above which two glyphs are "the same"
CASE_LIMIT = 0.7  # a small letter this close to its capital is the same shape at another size

_RANGES = (
    (0x0030, 0x0039),  # digits
    (0x0041, 0x005A),  # Latin capitals
    (0x0061, 0x007A),  # Latin small
    (0x0391, 0x03A9),  # Greek capitals
    (0x03B1, 0x03C9),  # Greek small
    (0x0410, 0x044F),  # Cyrillic
    (0x2190, 0x2199),  # arrows
    (0x2200, 0x222B),  # mathematical operators (part)
    (0x2260, 0x2265),
    (0x2282, 0x2297),
    (0x2605, 0x2606),  # stars
    (0x2660, 0x2667),  # card suits
    (0x00A7, 0x00A7),  # section sign
    (0x00B6, 0x00B6),  # pilcrow
    (0x2020, 0x2021),  # daggers
    (0x266A, 0x266B),  # notes
)
CANDIDATES = tuple(chr(c) for lo, hi in _RANGES for c in range(lo, hi + 1))


def font_dir() -> Path:
    """matplotlib's bundled TrueType fonts."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


def _available_fonts() -> list[Path]:
    return [font_dir() / f for f in FONT_FILES if (font_dir() / f).is_file()]


def _normalised_render(char: str, font: Path, side: int = 20) -> np.ndarray | None:
    """The glyph cropped to its ink and resized to ``side``², unit norm (None if blank)."""
    face = ImageFont.truetype(str(font), 48)
    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((48, 48), char, fill=255, font=face, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        return None
    ink = canvas.crop(box)
    square = Image.new("L", (max(ink.size),) * 2, 0)  # keep the aspect ratio: "-" is not "|"
    square.paste(ink, ((square.width - ink.width) // 2, (square.height - ink.height) // 2))
    pixels = np.asarray(square.resize((side, side), Image.BILINEAR), np.float64)
    pixels -= pixels.mean()
    norm = np.linalg.norm(pixels)
    return pixels.ravel() / norm if norm > 0 else None


@dataclass(frozen=True)
class Glyph:
    """One class: a character and the fonts that draw it."""

    char: str
    fonts: tuple[Path, ...]

    @property
    def name(self) -> str:
        """A filesystem-safe class name, e.g. ``U+03B1-greek-small-letter-alpha``."""
        label = unicodedata.name(self.char, "symbol").lower()
        slug = "".join(ch if ch.isalnum() else "-" for ch in label)
        return f"U+{ord(self.char):04X}-{slug}"


@cache
def distinct_glyphs() -> tuple[Glyph, ...]:
    """Candidate glyphs drawn by ≥ MIN_FONTS fonts, minus look-alikes (first one kept).

    Look-alikes: renders, cropped to the ink and padded square (aspect kept), with a cosine
    above ``SIMILARITY_LIMIT`` to a kept glyph; and small letters above ``CASE_LIMIT`` to their
    own capital (kept or not).
    """
    fonts = _available_fonts()
    if len(fonts) < MIN_FONTS:
        raise RuntimeError(f"matplotlib's fonts not found under {font_dir()}")
    kept: list[Glyph] = []
    renders: list[np.ndarray] = []
    for char in CANDIDATES:
        if not unicodedata.name(char, ""):
            continue
        covering = tuple(f for f in fonts if ord(char) in _cmap(f))
        if len(covering) < MIN_FONTS:
            continue
        render = _normalised_render(char, covering[0])
        if render is None:
            continue
        if renders and float(np.max(np.stack(renders) @ render)) > SIMILARITY_LIMIT:
            continue
        if char != char.upper() and len(char.upper()) == 1:
            capital = _normalised_render(char.upper(), covering[0])
            if capital is not None and float(capital @ render) > CASE_LIMIT:
                continue
        kept.append(Glyph(char, covering))
        renders.append(render)
    return tuple(kept)


def split_classes(
    glyphs: tuple[Glyph, ...], train_classes: int, test_classes: int, seed: int
) -> tuple[list[Glyph], list[Glyph]]:
    """Disjoint random training and test classes.

    Raises:
        ValueError: if there are not enough distinct glyphs.
    """
    if train_classes + test_classes > len(glyphs):
        raise ValueError(
            f"{train_classes} + {test_classes} classes asked for, but only {len(glyphs)} "
            "distinct glyphs are available; ask for fewer"
        )
    order = np.random.default_rng(seed).permutation(len(glyphs))
    chosen = [glyphs[i] for i in order[: train_classes + test_classes]]
    return chosen[:train_classes], chosen[train_classes:]


def render(glyph: Glyph, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One random rendering of ``glyph`` as a ``size``² grayscale image."""
    big = 4 * size  # draw large, then reduce (anti-aliasing)
    font = glyph.fonts[int(rng.integers(len(glyph.fonts)))]
    face = ImageFont.truetype(str(font), int(big * rng.uniform(0.45, 0.62)))
    canvas = Image.new("L", (big, big), 0)
    ImageDraw.Draw(canvas).text((big / 2, big / 2), glyph.char, fill=255, font=face, anchor="mm")
    # Stroke width: thicken or thin the ink.
    stroke = rng.choice(["thin", "same", "thick", "thicker"], p=[0.2, 0.35, 0.3, 0.15])
    if stroke == "thin":
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    elif stroke in ("thick", "thicker"):
        canvas = canvas.filter(ImageFilter.MaxFilter(5 if stroke == "thick" else 7))
    # Affine: rotation, shear, anisotropic scale, translation (inverse map for PIL).
    angle = math.radians(rng.uniform(-15, 15))
    shear = rng.uniform(-0.25, 0.25)
    scale, aspect = rng.uniform(0.8, 1.15), rng.uniform(0.9, 1.1)
    sx, sy = scale * aspect, scale / aspect
    tx, ty = rng.uniform(-0.08, 0.08) * big, rng.uniform(-0.08, 0.08) * big
    cos, sin = math.cos(angle), math.sin(angle)
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]])
    forward = forward @ np.diag([sx, sy])
    inverse = np.linalg.inv(forward)
    centre = np.array([big / 2, big / 2])
    offset = centre - inverse @ (centre + np.array([tx, ty]))
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    canvas = canvas.transform((big, big), Image.AFFINE, coefficients, Image.BILINEAR)
    # Reduce, then paper/ink levels, blur and noise.
    ink = canvas.resize((size, size), Image.LANCZOS)
    alpha = np.asarray(ink, np.float32) / 255.0
    paper, dark = rng.uniform(190, 255), rng.uniform(0, 90)
    pixels = paper + (dark - paper) * alpha
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(0, 10), (size, size))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def generate(
    out: str | Path,
    *,
    train_classes: int = 40,
    test_classes: int = 20,
    per_class: int = 50,
    size: int = 32,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Write the dataset; returns ``{"train": [class names], "test": [class names]}``."""
    out = Path(out)
    train, test = split_classes(distinct_glyphs(), train_classes, test_classes, seed)
    rows = []
    for split, glyphs in (("train", train), ("test", test)):
        for glyph in glyphs:
            # Per-class stream: a class's images do not depend on which other classes exist.
            rng = np.random.default_rng([seed, ord(glyph.char)])
            folder = out / split / glyph.name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                path = folder / f"{i:04d}.png"
                render(glyph, rng, size).save(path)
                rows.append((path.relative_to(out).as_posix(), glyph.name, split))
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return {"train": [g.name for g in train], "test": [g.name for g in test]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-classes", type=int, default=40)
    parser.add_argument("--test-classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    classes = generate(
        args.out,
        train_classes=args.train_classes,
        test_classes=args.test_classes,
        per_class=args.per_class,
        size=args.size,
        seed=args.seed,
    )
    print(f"{len(classes['train'])} training and {len(classes['test'])} test classes in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
