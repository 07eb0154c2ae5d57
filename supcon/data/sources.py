"""Image sources on disk: ``ImageFolder``-style trees and CSV manifests.

Both produce a :class:`FileSplit`: image paths with integer labels (or none, for unlabeled
data), the class names those integers stand for, and optional OML-style ``is_query`` /
``is_gallery`` flags for evaluation.

CSV manifests have a header with columns ``path,label[,split,is_query,is_gallery]``; ``path``
is relative to the image root (by default the CSV's folder); ``label`` may hold strings, which
are mapped to integers in sorted order (the mapping is kept in ``class_names``); with no
``label`` column the data is unlabeled and trains NT-Xent on augmentation pairs.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from supcon.errors import SupconError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
UNLABELED = -1
TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("test", "val", "valid", "validation", "eval", "query", "gallery")


#: Folder entries never taken as images: hidden files and folders (``.DS_Store``, macOS
#: AppleDouble ``._name.jpg``) and the ``__MACOSX`` folder zip archives leave behind.
IGNORED_NAMES = ("__MACOSX",)
#: Background that transparent pixels are composited on (LA, PA, RGBA, P with transparency).
BACKGROUND = (255, 255, 255)
#: Problems :func:`load_image` tells apart (``BadImageError.kind``).
BAD_IMAGE_KINDS = ("zero-byte", "not an image", "truncated or corrupt", "too large", "unreadable")


class DataError(SupconError, ValueError):
    """The data on disk cannot be used as given; the message says what to change."""


class BadImageError(DataError):
    """One image file cannot be used; ``kind`` is one of :data:`BAD_IMAGE_KINDS`."""

    path: str
    kind: str
    detail: str | None

    def __init__(self, path: str, kind: str | None = None, detail: str | None = None) -> None:
        if kind is None:  # rebuilt by a DataLoader from a worker's report: keep the last line
            lines = [x for x in path.strip().splitlines() if f"{type(self).__name__}: " in x]
            message = lines[-1].split(f"{type(self).__name__}: ", 1)[1] if lines else path
            super().__init__(message)
            self.path = ""
            self.kind = next((k for k in BAD_IMAGE_KINDS if f": {k} (" in message), "unreadable")
            self.detail = message
            return
        super().__init__(f"cannot read image {path!r}: {kind} ({detail})")
        self.path = path
        self.kind = kind
        self.detail = detail


def pixel_limit(max_pixels: int | None) -> int:
    """The largest image (width × height) allowed: ``max_pixels``, or Pillow's default limit.

    A limit above Pillow's raises Pillow's own (process-wide) limit to match, so that Pillow
    does not refuse what the recipe allows.
    """
    limit = int(max_pixels) if max_pixels else int(Image.MAX_IMAGE_PIXELS or 0)
    if limit and Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    return limit


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` (``"RGB"`` or ``"L"``) with its values kept in the 8-bit range.

    16-bit and 32-bit integer grayscale (``I;16*``, ``I``) is read as 0–65535 and divided by
    257; float grayscale (``F``) is read as 0–1. Transparent pixels (``LA``, ``PA``, ``RGBA``,
    ``P`` with a transparency entry) are composited on a white background. CMYK and other
    modes use Pillow's conversion.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64) * 255.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == mode else image.convert(mode)


def load_image(path: str, mode: str = "RGB", *, max_pixels: int | None = None) -> Image.Image:
    """Open one image file with correct values, upright, in ``mode``.

    Every image goes through here (training, evaluation, search, ``check-data``). The file is
    decoded completely (a truncated file fails here, not later), turned upright by its EXIF
    orientation, and converted as :func:`_to_mode` describes.

    Args:
        path: The image file.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale).
        max_pixels: Refuse images with more pixels than this (default: Pillow's
            decompression-bomb limit, 89,478,485); checked from the header, before decoding.

    Returns:
        The decoded image.

    Raises:
        BadImageError: saying whether the file is empty, not an image, truncated or corrupt,
            too large, or unreadable.
    """
    limit = pixel_limit(max_pixels)
    try:
        if os.path.getsize(path) == 0:
            raise BadImageError(path, "zero-byte", "the file is empty")
        with Image.open(path) as image:
            width, height = image.size
            if limit and width * height > limit:
                raise BadImageError(
                    path,
                    "too large",
                    f"{width}×{height} = {width * height:,} pixels, over the limit of "
                    f"{limit:,}; raise data.max_image_pixels if it is genuine",
                )
            image.load()
            return _to_mode(ImageOps.exif_transpose(image), mode)
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(path, "too large", f"{exc}; raise data.max_image_pixels") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image", "Pillow cannot identify its format") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise BadImageError(path, "unreadable", exc.strerror or str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise BadImageError(path, "truncated or corrupt", str(exc) or type(exc).__name__) from None


@dataclass(frozen=True)
class FileSplit:
    """Image files with labels.

    Attributes:
        paths: Absolute image paths.
        labels: ``(N,)`` int64 class ids; ``-1`` everywhere for unlabeled data.
        class_names: Name of each class id (empty for unlabeled data).
        is_query: ``(N,)`` bool, or ``None`` (every item is a query).
        is_gallery: ``(N,)`` bool, or ``None`` (every item is in the gallery).
        mode: PIL mode images are converted to: ``"RGB"`` or ``"L"`` (grayscale).
        max_pixels: Largest image allowed (``None``: Pillow's limit), see :func:`load_image`.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    mode: str = "RGB"
    max_pixels: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELED).all())

    def load(self, index: int) -> Image.Image:
        """Open image ``index`` in :attr:`mode` (RGB by default; see :func:`load_image`)."""
        return load_image(self.paths[index], self.mode, max_pixels=self.max_pixels)

    def subset(self, indices: np.ndarray) -> FileSplit:
        """The items at ``indices``, same class ids."""
        pick = lambda a: None if a is None else a[indices]  # noqa: E731
        return replace(
            self,
            paths=tuple(self.paths[i] for i in indices),
            labels=self.labels[indices],
            is_query=pick(self.is_query),
            is_gallery=pick(self.is_gallery),
        )


def _is_image(path: Path, root: Path) -> bool:
    """An image file under ``root`` that is not hidden (see :data:`IGNORED_NAMES`)."""
    parts = path.relative_to(root).parts
    if any(p.startswith(".") or p in IGNORED_NAMES for p in parts):
        return False
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def scan_image_folder(root: str | Path, class_names: tuple[str, ...] | None = None) -> FileSplit:
    """Read an ``ImageFolder`` tree: ``root/<class>/<image>``.

    Args:
        root: Folder whose sub-folders are classes.
        class_names: Class-id order to use (e.g. the training split's); new classes are
            appended after these.

    Hidden files and folders (names starting with ``.``, e.g. ``.DS_Store`` and macOS
    ``._name.jpg`` AppleDouble files) and ``__MACOSX`` folders are ignored.

    Returns:
        The images, labelled by sub-folder, classes in sorted order.

    Raises:
        DataError: if the folder is missing, has no class folders, or some are empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"image folder {str(root)!r} does not exist; set data.root to a folder of class "
            "sub-folders"
        )
    class_dirs = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES
    )
    if not class_dirs:
        raise DataError(
            f"image folder {str(root)!r} has no class sub-folders; expected "
            "root/<class>/<image>.jpg"
        )
    names = list(class_names or ())
    paths: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if _is_image(p, class_dir))
        if not files:
            empty.append(class_dir.name)
            continue
        if class_dir.name not in names:
            names.append(class_dir.name)
        label = names.index(class_dir.name)
        paths.extend(str(p.resolve()) for p in files)
        labels.extend([label] * len(files))
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DataError(
            f"{len(empty)} class folder(s) in {str(root)!r} hold no images ({shown}); remove them "
            f"or add images with extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    return FileSplit(tuple(paths), np.asarray(labels, dtype=np.int64), tuple(names))


def _parse_flag(value: str, column: str, line: int) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "y", "t"):
        return True
    if text in ("0", "false", "no", "n", "f", ""):
        return False
    raise DataError(
        f"manifest line {line}: column {column!r} must be 0/1 or true/false, got {value!r}"
    )


@dataclass(frozen=True)
class Manifest:
    """A parsed CSV manifest: every row, plus its ``split`` column when present."""

    files: FileSplit
    splits: tuple[str, ...] | None


def _read_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """Header, rows as ``{column: value}`` and each row's line number; a row with more or fewer
    fields than the header is refused with its line number."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [c.strip() for c in next(reader, [])]
        if "path" not in header:
            raise DataError(
                f"manifest {str(csv_path)!r} has columns {header}; it needs a header with "
                "'path' and optionally 'label', 'split', 'is_query', 'is_gallery'"
            )
        rows, lines = [], []
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            if len(fields) != len(header):
                raise DataError(
                    f"manifest {str(csv_path)!r} line {reader.line_num} has {len(fields)} "
                    f"field(s) but the header has {len(header)} ({', '.join(header)}); quote "
                    "values that contain commas and give every row the header's columns"
                )
            rows.append({c: v.strip() for c, v in zip(header, fields, strict=True)})
            lines.append(reader.line_num)
    return header, rows, lines


def _inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it, by name (``..`` counts; symlinks are not
    followed, so a dataset of links into a shared store stays inside)."""
    return os.path.commonpath([path, root]) == root


def _check_duplicates(
    csv_path: Path, paths: list[str], labels: list[str] | None, lines: list[int]
) -> None:
    first: dict[str, int] = {}
    for i, path in enumerate(paths):
        j = first.setdefault(path, i)
        if j == i:
            continue
        where = f"manifest {str(csv_path)!r} lines {lines[j]} and {lines[i]} both list {path!r}"
        if labels is not None and labels[i] != labels[j]:
            raise DataError(
                f"{where} with different labels ({labels[j]!r} and {labels[i]!r}); an image "
                "has one label: keep one of the rows"
            )
        raise DataError(
            f"{where}; list each image once (a duplicate is its own nearest neighbour and "
            "inflates retrieval metrics)"
        )


def read_csv_manifest(
    csv_path: str | Path, root: str | Path | None = None, *, allow_outside_root: bool = False
) -> Manifest:
    """Read a CSV manifest with columns ``path,label[,split,is_query,is_gallery]``.

    Args:
        csv_path: The CSV file (header row required).
        root: Folder the ``path`` column is relative to (default: the CSV's folder).
        allow_outside_root: Accept paths that lead outside ``root`` (absolute paths
            elsewhere, ``../``); refused by default.

    Returns:
        All rows; string labels mapped to ids in sorted order.

    Raises:
        DataError: for a missing file or column, an empty manifest, a row with more or fewer
            fields than the header, a path outside the root, the same image listed twice,
            missing images (the first few are listed) or malformed flags; with line numbers.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"manifest {str(csv_path)!r} not found; set data.manifest to a CSV file")
    base = Path(root) if root is not None else csv_path.parent
    columns, rows, lines = _read_rows(csv_path)
    if not rows:
        raise DataError(f"manifest {str(csv_path)!r} has no rows")

    base_abs = os.path.abspath(base)
    if not allow_outside_root:
        for row, line in zip(rows, lines, strict=True):
            if not _inside(os.path.normpath(os.path.join(base_abs, row["path"])), base_abs):
                raise DataError(
                    f"manifest {str(csv_path)!r} line {line}: path {row['path']!r} is outside "
                    f"the image root {base_abs!r}; move the image under it, or set "
                    "data.allow_outside_root=true"
                )
    paths = [str((base / row["path"]).resolve()) for row in rows]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DataError(
            f"{len(missing)} of {len(paths)} images in {str(csv_path)!r} are missing ({shown}); "
            f"paths are relative to {str(base)!r} (set data.root to change that)"
        )
    _check_duplicates(
        csv_path, paths, [r["label"] for r in rows] if "label" in columns else None, lines
    )
    if "label" in columns:
        raw_labels = [row["label"] for row in rows]
        blank = [line for line, v in zip(lines, raw_labels, strict=True) if v == ""]
        if blank:
            raise DataError(f"manifest {str(csv_path)!r}: empty label on line(s) {blank[:5]}")
        names, labels = np.unique(
            np.asarray(raw_labels, dtype=object).astype(str), return_inverse=True
        )
        if all(n.lstrip("-").isdigit() for n in names):
            order = np.argsort([int(n) for n in names], kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            names, labels = names[order], rank[labels]
        class_names = tuple(str(n) for n in names)
        labels = labels.astype(np.int64)
    else:
        class_names = ()
        labels = np.full(len(rows), UNLABELED, dtype=np.int64)

    def flags(column: str) -> np.ndarray | None:
        if column not in columns:
            return None
        return np.array(
            [_parse_flag(r[column], column, line) for r, line in zip(rows, lines, strict=True)]
        )

    splits = tuple(r["split"].lower() for r in rows) if "split" in columns else None
    files = FileSplit(tuple(paths), labels, class_names, flags("is_query"), flags("is_gallery"))
    return Manifest(files, splits)
