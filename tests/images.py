"""Tiny synthetic image datasets written to disk for data-path tests (no download)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = [
    (220, 40, 40),
    (40, 200, 60),
    (40, 60, 220),
    (230, 200, 40),
    (160, 40, 200),
    (40, 200, 210),
]


def make_image(path: Path, class_id: int, rng: np.random.Generator, size: int = 24) -> None:
    """A noisy image whose colour and stripe direction depend on the class."""
    base = np.array(COLORS[class_id % len(COLORS)], dtype=np.float32)
    grid = np.indices((size, size)).sum(axis=0) if class_id % 2 else np.indices((size, size))[0]
    stripes = ((grid // 4) % 2)[..., None] * 60.0
    pixels = np.clip(base + stripes + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_image_folder(root: Path, classes: int = 4, per_class: int = 12, seed: int = 0) -> Path:
    """``root/class_<k>/img_<i>.png``."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        for i in range(per_class):
            make_image(root / f"class_{k}" / f"img_{i}.png", k, rng)
    return root


def make_csv_manifest(
    root: Path,
    classes: int = 4,
    per_class: int = 12,
    *,
    labels: bool = True,
    split: bool = False,
    query_gallery: bool = False,
    seed: int = 0,
) -> Path:
    """Images under ``root/images`` and ``root/manifest.csv`` with string labels."""
    rng = np.random.default_rng(seed)
    columns = ["path"] + (["label"] if labels else []) + (["split"] if split else [])
    columns += ["is_query", "is_gallery"] if query_gallery else []
    rows = []
    for k in range(classes):
        for i in range(per_class):
            rel = f"images/{k}_{i}.png"
            make_image(root / rel, k, rng)
            row = {"path": rel, "label": f"kind-{chr(ord('a') + k)}"}
            row["split"] = "test" if i % 4 == 0 else "train"
            row["is_query"] = "1" if i % 8 == 0 else "0"
            row["is_gallery"] = "0" if i % 8 == 0 else "1"
            rows.append({c: row[c] for c in columns})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
