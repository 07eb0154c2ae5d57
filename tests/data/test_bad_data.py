"""Folder scans skip hidden files; manifests refuse ambiguous rows; the bad-image policy."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from supcon.config import config_from_dict
from supcon.data import DataError, load_splits, read_csv_manifest, scan_image_folder
from supcon.data.verify import SKIPPED_CSV, screen_splits
from tests.badfiles import EXPECTED_KIND, apple_double, write_bad_files
from tests.images import make_image, make_image_folder


def test_hidden_and_apple_double_files_are_not_images(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    apple_double(root / "class_0" / "._img_0.png")
    (root / "class_0" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    make_image(root / "class_1" / ".thumbs" / "t.png", 1, np.random.default_rng(0))
    (root / "__MACOSX" / "class_0").mkdir(parents=True)
    apple_double(root / "__MACOSX" / "class_0" / "._img_1.png")
    (root / "__MACOSX" / "x.png").write_bytes(b"")
    files = scan_image_folder(root)
    assert files.class_names == ("class_0", "class_1")
    assert sorted(Path(p).name for p in files.paths) == sorted(
        [f"img_{i}.png" for i in range(3)] * 2
    )


def _manifest(path: Path, rows: list[list[str]], header=("path", "label")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        make_image(tmp_path / "img" / f"{i}.png", i % 2, rng)
    return tmp_path


def test_duplicates_are_refused_with_both_line_numbers(images: Path) -> None:
    rows = [["img/0.png", "a"], ["img/1.png", "b"], ["img/./0.png", "b"]]
    with pytest.raises(DataError, match=r"lines 2 and 4 both list .*0\.png.* \('a' and 'b'\)"):
        read_csv_manifest(_manifest(images / "m.csv", rows))
    rows[2][1] = "a"
    with pytest.raises(DataError, match=r"lines 2 and 4 both list .*list each image once"):
        read_csv_manifest(_manifest(images / "m.csv", rows))


def test_rows_with_extra_or_missing_fields_are_refused(images: Path) -> None:
    (images / "extra.csv").write_text("path,label\nimg/0.png,a\nimg/1.png,b,oops\n")
    with pytest.raises(DataError, match=r"line 3 has 3 field\(s\) but the header has 2"):
        read_csv_manifest(images / "extra.csv")
    (images / "short.csv").write_text("path,label,split\nimg/0.png,a,train\n\nimg/1.png,b\n")
    with pytest.raises(DataError, match=r"line 4 has 2 field\(s\) but the header has 3"):
        read_csv_manifest(images / "short.csv")
    (images / "quoted.csv").write_text('path,label\nimg/0.png,"a, b"\nimg/1.png,c\n')
    assert read_csv_manifest(images / "quoted.csv").files.class_names == ("a, b", "c")


def test_paths_outside_the_root_need_permission(images: Path) -> None:
    inner = images / "inner"
    inner.mkdir()
    os.symlink(images / "img" / "1.png", inner / "link.png")  # links stay inside
    rows = [["link.png", "a"], ["../img/0.png", "b"]]
    manifest = _manifest(inner / "m.csv", rows)
    with pytest.raises(DataError, match=r"line 3: path '\.\./img/0\.png' is outside the image"):
        read_csv_manifest(manifest)
    absolute = _manifest(inner / "abs.csv", [[str(images / "img" / "2.png"), "a"]])
    with pytest.raises(DataError, match="data.allow_outside_root=true"):
        read_csv_manifest(absolute)
    files = read_csv_manifest(manifest, allow_outside_root=True).files
    assert [Path(p).name for p in files.paths] == ["1.png", "0.png"]
    config = config_from_dict(
        {"data": {"dataset": "csv", "manifest": str(manifest), "allow_outside_root": True}}
    )
    assert config.data.allow_outside_root


def _folder_with_bad_files(root: Path) -> dict[str, Path]:
    make_image_folder(root, classes=3, per_class=6)
    bad = write_bad_files(root / "class_1")
    apple_double(root / "class_2" / "._img_0.png")  # ignored, not reported
    return bad


def _config(root: Path, **data) -> object:
    return config_from_dict({"data": {"dataset": "folder", "root": str(root), **data}})


def test_verify_with_error_policy_lists_the_bad_files(tmp_path: Path) -> None:
    _folder_with_bad_files(tmp_path / "d")
    config = _config(tmp_path / "d", verify=True)
    train, test = load_splits(config.data, 0)
    with pytest.raises(DataError, match=r"^5 of 23 images cannot be used: .*set data.on_bad_"):
        screen_splits(config.data, train, test)
    unchecked = _config(tmp_path / "d")  # verify off, error policy: nothing is opened
    assert screen_splits(unchecked.data, train, test)[2] == []


def test_skip_policy_drops_bad_files_from_both_splits(tmp_path: Path) -> None:
    bad = _folder_with_bad_files(tmp_path / "d")
    config = _config(tmp_path / "d", on_bad_image="skip")
    train, test = load_splits(config.data, 0)
    train2, test2, found = screen_splits(config.data, train, test)
    assert sorted(b.path for b in found) == sorted(str(p.resolve()) for p in bad.values())
    assert {b.kind for b in found} == set(EXPECTED_KIND.values())
    kept = set(train2.paths) | set(test2.paths)
    assert kept == (set(train.paths) | set(test.paths)) - {b.path for b in found}
    assert len(kept) == 18
    for split in (train2, test2):
        for i in range(len(split)):  # every remaining item loads, labels still match
            split.load(i)
            assert split.class_names[split.labels[i]] == Path(split.paths[i]).parent.name


def test_skip_policy_trains_and_writes_skipped_csv(tmp_path: Path) -> None:
    from supcon.training import train

    bad = _folder_with_bad_files(tmp_path / "d")
    config = config_from_dict(
        {
            "model": {"backbone": "test_resnet", "embedding_dim": 8},
            "train": {"epochs": 1, "batch_size": 8, "threads": 1},
            "optim": {"warmup_epochs": 0},
            "data": {
                "dataset": "folder",
                "root": str(tmp_path / "d"),
                "image_size": 32,
                "on_bad_image": "skip",
            },
        }
    )
    metrics = train(config, tmp_path / "run", progress=False)
    assert 0.0 <= metrics["recall@1"] <= 1.0
    with (tmp_path / "run" / SKIPPED_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["path"] for r in rows) == sorted(str(p.resolve()) for p in bad.values())
    assert {r["problem"] for r in rows} == set(EXPECTED_KIND.values())
