"""Image folders, CSV manifests, splits and transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from supcon.config import config_from_dict
from supcon.data import (
    DataError,
    EvalDataset,
    MultiViewDataset,
    build_transforms,
    load_splits,
    read_csv_manifest,
    scan_image_folder,
)
from supcon.data.splits import split_by_class, split_by_sample
from tests.images import make_csv_manifest, make_image, make_image_folder


def test_scan_image_folder(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=3, per_class=5)
    files = scan_image_folder(tmp_path)
    assert files.class_names == ("class_0", "class_1", "class_2")
    assert len(files) == 15 and np.bincount(files.labels).tolist() == [5, 5, 5]
    assert files.load(0).mode == "RGB"
    # A given class order is kept, new classes are appended.
    again = scan_image_folder(tmp_path, class_names=("class_2", "class_0"))
    assert again.class_names == ("class_2", "class_0", "class_1")
    assert again.labels[0] == 1  # class_0 is id 1 in that order


def test_scan_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_image_folder(tmp_path)
    make_image_folder(tmp_path, classes=2, per_class=2)
    (tmp_path / "empty_a").mkdir()
    (tmp_path / "empty_b").mkdir()
    (tmp_path / "empty_b" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"2 class folder\(s\).*empty_a, empty_b"):
        scan_image_folder(tmp_path)


def test_csv_manifest_maps_string_labels(tmp_path: Path) -> None:
    manifest = read_csv_manifest(make_csv_manifest(tmp_path, classes=3, per_class=4))
    assert manifest.files.class_names == ("kind-a", "kind-b", "kind-c")
    assert manifest.files.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert manifest.splits is None and manifest.files.labeled


def test_csv_manifest_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        make_image(tmp_path / name, 0, rng)
    (tmp_path / "m.csv").write_text("path,label\na.png,10\nb.png,9\nc.png,-1\n")
    files = read_csv_manifest(tmp_path / "m.csv").files
    assert files.class_names == ("-1", "9", "10") and files.labels.tolist() == [2, 1, 0]


def test_csv_manifest_unlabeled_and_flags(tmp_path: Path) -> None:
    unlabeled = read_csv_manifest(make_csv_manifest(tmp_path / "u", labels=False)).files
    assert not unlabeled.labeled and (unlabeled.labels == -1).all()
    flagged = read_csv_manifest(make_csv_manifest(tmp_path / "f", query_gallery=True)).files
    assert flagged.is_query is not None and flagged.is_query.sum() == 4 * 2
    assert (flagged.is_query ^ flagged.is_gallery).all()


def test_csv_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_csv_manifest(tmp_path / "missing.csv")
    (tmp_path / "nopath.csv").write_text("file,label\nx.png,1\n")
    with pytest.raises(DataError, match="needs a header with 'path'"):
        read_csv_manifest(tmp_path / "nopath.csv")
    (tmp_path / "missing_files.csv").write_text(
        "path,label\n" + "".join(f"gone_{i}.png,1\n" for i in range(5))
    )
    with pytest.raises(DataError, match=r"5 of 5 images .* missing .*gone_0.png.*\.\.\."):
        read_csv_manifest(tmp_path / "missing_files.csv")
    rng = np.random.default_rng(0)
    make_image(tmp_path / "ok.png", 0, rng)
    (tmp_path / "flags.csv").write_text("path,label,is_query\nok.png,1,maybe\n")
    with pytest.raises(DataError, match="line 2: column 'is_query'"):
        read_csv_manifest(tmp_path / "flags.csv")
    (tmp_path / "blank.csv").write_text("path,label\nok.png,\n")
    with pytest.raises(DataError, match="empty label on line"):
        read_csv_manifest(tmp_path / "blank.csv")


def test_splits() -> None:
    labels = np.repeat(np.arange(6), 10)
    train, test = split_by_sample(labels, 0.3, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 60
    assert set(labels[test]) == set(range(6))
    assert (np.sort(np.concatenate([train, test])) == np.arange(60)).all()
    assert (split_by_sample(labels, 0.3, seed=0)[1] == test).all()
    train, test = split_by_class(labels, 0.3)
    assert set(labels[test]) == {4, 5} and set(labels[train]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="single image"):
        split_by_sample(np.array([0, 0, 1]), 0.5, seed=0)
    with pytest.raises(ValueError, match="at least two classes"):
        split_by_class(np.zeros(5, dtype=np.int64), 0.5)


def test_load_splits_folder_layouts(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "flat", classes=4, per_class=8)
    config = config_from_dict(
        {"data": {"dataset": "folder", "root": str(tmp_path / "flat"), "split_by": "class"}}
    )
    train, test = load_splits(config.data, seed=0)
    assert set(train.labels) == {0, 1, 2} and set(test.labels) == {3}
    make_image_folder(tmp_path / "tree" / "train", classes=3, per_class=4)
    make_image_folder(tmp_path / "tree" / "val", classes=3, per_class=2, seed=1)
    config = config_from_dict({"data": {"dataset": "folder", "root": str(tmp_path / "tree")}})
    train, test = load_splits(config.data, seed=0)
    assert (len(train), len(test)) == (12, 6) and test.class_names == train.class_names


def test_load_splits_csv_split_column(tmp_path: Path) -> None:
    manifest = make_csv_manifest(tmp_path, classes=3, per_class=8, split=True)
    config = config_from_dict({"data": {"dataset": "csv", "manifest": str(manifest)}})
    train, test = load_splits(config.data, seed=0)
    assert (len(train), len(test)) == (18, 6)
    bad = tmp_path / "bad.csv"
    bad.write_text(manifest.read_text().replace(",test", ",holdout"))
    config = config_from_dict({"data": {"dataset": "csv", "manifest": str(bad)}})
    with pytest.raises(DataError, match=r"\['holdout'\] are not recognised"):
        load_splits(config.data, seed=0)


def test_transforms_follow_timm_config(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=2, per_class=3)
    split = scan_image_folder(tmp_path)
    backbone = timm.create_model("test_resnet", num_classes=0)
    config = config_from_dict(
        {"data": {"dataset": "folder", "root": str(tmp_path), "image_size": 32, "views": 3}}
    )
    train_tf, eval_tf = build_transforms(config.data, backbone)
    views, label, index = MultiViewDataset(split, train_tf, 3)[4]
    assert views.shape == (3, 3, 32, 32) and views.dtype == torch.float32
    assert not torch.equal(views[0], views[1])  # independent augmentations
    image, _, _ = EvalDataset(split, eval_tf)[4]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image, EvalDataset(split, eval_tf)[4][0])  # deterministic
    assert (label, index) == (1, 4)
