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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

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


class DataError(ValueError):
    """The data on disk cannot be used as given; the message says what to change."""


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
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    mode: str = "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELED).all())

    def load(self, index: int) -> Image.Image:
        """Open image ``index`` in :attr:`mode` (RGB by default)."""
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert(self.mode)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image {path!r}: {exc}") from None

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


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def scan_image_folder(root: str | Path, class_names: tuple[str, ...] | None = None) -> FileSplit:
    """Read an ``ImageFolder`` tree: ``root/<class>/<image>``.

    Args:
        root: Folder whose sub-folders are classes.
        class_names: Class-id order to use (e.g. the training split's); new classes are
            appended after these.

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
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"image folder {str(root)!r} has no class sub-folders; expected "
            "root/<class>/<image>.jpg"
        )
    names = list(class_names or ())
    paths, labels, empty = [], [], []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if _is_image(p))
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


def read_csv_manifest(csv_path: str | Path, root: str | Path | None = None) -> Manifest:
    """Read a CSV manifest with columns ``path,label[,split,is_query,is_gallery]``.

    Args:
        csv_path: The CSV file (header row required).
        root: Folder the ``path`` column is relative to (default: the CSV's folder).

    Returns:
        All rows; string labels mapped to ids in sorted order.

    Raises:
        DataError: for a missing file or column, an empty manifest, missing images (the first
            few are listed) or malformed flags.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"manifest {str(csv_path)!r} not found; set data.manifest to a CSV file")
    base = Path(root) if root is not None else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "path" not in columns:
            raise DataError(
                f"manifest {str(csv_path)!r} has columns {columns}; it needs a header with "
                "'path' and optionally 'label', 'split', 'is_query', 'is_gallery'"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise DataError(f"manifest {str(csv_path)!r} has no rows")

    paths = [str((base / row["path"]).resolve()) for row in rows]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DataError(
            f"{len(missing)} of {len(paths)} images in {str(csv_path)!r} are missing ({shown}); "
            f"paths are relative to {str(base)!r} (set data.root to change that)"
        )
    if "label" in columns:
        raw_labels = [row["label"] for row in rows]
        blank = [i + 2 for i, v in enumerate(raw_labels) if v == ""]
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
        return np.array([_parse_flag(r[column], column, i + 2) for i, r in enumerate(rows)])

    splits = tuple(r["split"].lower() for r in rows) if "split" in columns else None
    files = FileSplit(tuple(paths), labels, class_names, flags("is_query"), flags("is_gallery"))
    return Manifest(files, splits)
