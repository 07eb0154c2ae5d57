"""Tiny copies of the benchmark datasets in their official on-disk formats (no download).

Every builder writes real files in exactly the layout the official archive extracts to: text
listings, a MATLAB ``.mat`` written with ``scipy.io.savemat``, CIFAR pickles, CSVs and small
images, and returns what a reader should find, so tests compare against the builder's own plan.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from scipy.io import savemat

from tests.images import make_image


def make_cub(root: Path, classes: int = 6, per_class: int = 3, seed: int = 0) -> Path:
    """``images.txt``, ``image_class_labels.txt``, ``classes.txt``, ``images/<class>/*.jpg``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images, labels, names = [], [], []
    image_id = 0
    for k in range(1, classes + 1):
        name = f"{k:03d}.Bird_{k}"
        names.append(f"{k} {name}")
        for i in range(per_class):
            image_id += 1
            rel = f"{name}/Bird_{k}_{i:04d}.jpg"
            make_image(root / "images" / rel, k, rng)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {k}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def make_cars(root: Path, classes: int = 6, per_class: int = 3, seed: int = 0) -> Path:
    """The devkit's ``cars_annos.mat`` (struct array ``annotations``) and ``car_ims/*.jpg``.

    Images are interleaved across classes, as in the real file, and half are flagged ``test``
    (a flag the retrieval protocol ignores).
    """
    rng = np.random.default_rng(seed)
    dtype = [
        ("relative_im_path", object),
        ("bbox_x1", object),
        ("bbox_y1", object),
        ("bbox_x2", object),
        ("bbox_y2", object),
        ("class", object),
        ("test", object),
    ]
    records = []
    image_id = 0
    for _ in range(per_class):
        for k in range(1, classes + 1):
            image_id += 1
            rel = f"car_ims/{image_id:06d}.jpg"
            make_image(root / rel, k, rng)
            records.append((rel, 1, 1, 20, 20, k, image_id % 2))
    annotations = np.array(records, dtype=dtype).reshape(1, -1)
    class_names = np.array([f"Make Model {k}" for k in range(1, classes + 1)], dtype=object)
    savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return root


def make_sop(root: Path, classes: int = 8, per_class: int = 2, seed: int = 0) -> Path:
    """``Ebay_train.txt`` / ``Ebay_test.txt`` (first / second half of the products)."""
    rng = np.random.default_rng(seed)
    header = "image_id class_id super_class_id path"
    train, test = [header], [header]
    image_id = 0
    for k in range(1, classes + 1):
        category = ("bicycle", "chair")[k % 2]
        for i in range(per_class):
            image_id += 1
            rel = f"{category}_final/{k}{i}_{i}.JPG"
            make_image(root / rel, k, rng)
            row = f"{image_id} {k} {k % 2 + 1} {rel}"
            (train if k <= classes // 2 else test).append(row)
    (root / "Ebay_train.txt").write_text("\n".join(train) + "\n")
    (root / "Ebay_test.txt").write_text("\n".join(test) + "\n")
    return root


def make_inshop(root: Path, train_items: int = 3, test_items: int = 3, per_item: int = 3) -> Path:
    """``list_eval_partition.txt`` + ``img/``: test items' first image is a query, the rest
    gallery."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(train_items + test_items):
        item = f"id_{k + 1:08d}"
        for i in range(per_item):
            rel = f"img/WOMEN/Dresses/{item}/{i + 1:02d}_1_front.jpg"
            make_image(root / rel, k, rng)
            status = "train" if k < train_items else ("query" if i == 0 else "gallery")
            rows.append(f"{rel} {item} {status}")
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n"
    (root / "list_eval_partition.txt").write_text(text)
    return root


def make_cifar(root: Path, fine: bool = False, per_batch: int = 4, seed: int = 0) -> Path:
    """torchvision's python-pickle layout: ``cifar-10-batches-py/`` or ``cifar-100-python/``.

    Returns:
        The folder to pass as ``data.root`` (holding the ``cifar-*`` folder).
    """
    rng = np.random.default_rng(seed)
    classes = 100 if fine else 10
    folder = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, count: int, offset: int, repeat: int = 1) -> None:
        labels = [(offset + i // repeat) % classes for i in range(count)]
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        data[:, 0] = labels  # the first red pixel encodes the label, for checks
        batch = {"data": data, "filenames": [f"img_{offset + i}.png" for i in range(count)]}
        batch["fine_labels" if fine else "labels"] = labels
        if fine:
            batch["coarse_labels"] = [label // 5 for label in labels]
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)

    if fine:
        write("train", 5 * per_batch, 0)
        write("test", per_batch, 7, repeat=2)
        meta = {"fine_label_names": [f"fine_{k}" for k in range(100)]}
        meta["coarse_label_names"] = [f"coarse_{k}" for k in range(20)]
        meta_name = "meta"
    else:
        for b in range(1, 6):
            write(f"data_batch_{b}", per_batch, (b - 1) * per_batch)
        write("test_batch", per_batch, 3, repeat=2)
        meta = {"label_names": [f"name_{k}" for k in range(10)], "num_vis": 3072}
        meta_name = "batches.meta"
    with (folder / meta_name).open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return root


def make_fewshot_csv(
    root: Path, base: int = 4, val: int = 2, novel: int = 4, per_class: int = 4, seed: int = 0
) -> Path:
    """miniImageNet layout: flat ``images/`` and ``train.csv``, ``val.csv``, ``test.csv``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for name, count in (("train", base), ("val", val), ("test", novel)):
        with (root / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            for _ in range(count):
                wnid = f"n{k:08d}"
                for i in range(per_class):
                    filename = f"{wnid}{i + 1:08d}.jpg"
                    make_image(root / "images" / filename, k, rng)
                    writer.writerow([filename, wnid])
                k += 1
    return root


def make_omniglot(
    root: Path, background: int = 2, evaluation: int = 1, characters: int = 3, drawers: int = 3
) -> Path:
    """``images_background/`` and ``images_evaluation/`` of ``alphabet/characterNN/*.png``."""
    rng = np.random.default_rng(0)
    k = 0
    for folder, alphabets in (("images_background", background), ("images_evaluation", evaluation)):
        for a in range(alphabets):
            for c in range(characters):
                for d in range(drawers):
                    path = root / folder / f"Alphabet_{folder[7]}{a}" / f"character{c + 1:02d}"
                    make_image(path / f"{k:04d}_{d + 1:02d}.png", k, rng, size=20)
                k += 1
    return root
