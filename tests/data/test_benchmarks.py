"""Benchmark readers on tiny fake trees in the official formats: splits, counts, flags, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from supcon.config import ConfigError, config_from_dict
from supcon.data import DataError, load_splits
from supcon.data.benchmarks import ArraySplit, load_benchmark
from tests.data.fake_benchmarks import (
    make_cars,
    make_cifar,
    make_cub,
    make_fewshot_csv,
    make_inshop,
    make_omniglot,
    make_sop,
)


def _names(split) -> list[str]:
    return [split.class_names[label] for label in split.labels]


def test_cub200_classes_split_in_halves(tmp_path: Path) -> None:
    make_cub(tmp_path / "CUB_200_2011", classes=6, per_class=3)
    train, test = load_benchmark("cub200", tmp_path)  # the archive's top folder is found
    assert len(train) == 9 and len(test) == 9
    assert sorted(set(_names(train))) == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert sorted(set(_names(test))) == ["004.Bird_4", "005.Bird_5", "006.Bird_6"]
    assert train.class_names == test.class_names  # one id space
    # Each path is the image of its class (the folder name matches the label's name).
    for split in (train, test):
        for path, name in zip(split.paths, _names(split), strict=True):
            assert Path(path).parent.name == name and Path(path).is_file()
    assert test.is_query is None and test.is_gallery is None  # leave-one-out
    assert train.load(0).mode == "RGB"


def test_cars196_reads_the_mat_file(tmp_path: Path) -> None:
    make_cars(tmp_path, classes=6, per_class=2)
    train, test = load_benchmark("cars196", tmp_path)
    # Interleaved images, classes 1-3 train and 4-6 test whatever the 'test' flag says.
    assert np.bincount(train.labels).tolist() == [2, 2, 2]
    assert sorted(set(test.labels.tolist())) == [3, 4, 5]
    assert train.class_names[0] == "Make Model 1"
    assert Path(train.paths[0]).name == "000001.jpg" and Path(train.paths[1]).name == "000002.jpg"
    assert Path(test.paths[0]).name == "000004.jpg"


def test_sop_official_files(tmp_path: Path) -> None:
    make_sop(tmp_path, classes=8, per_class=2)
    train, test = load_benchmark("sop", tmp_path)
    assert len(train) == 8 and len(test) == 8
    assert set(train.labels.tolist()) == {0, 1, 2, 3} and set(test.labels.tolist()) == {4, 5, 6, 7}
    assert Path(train.paths[0]).parent.name == "chair_final"


def test_inshop_query_and_gallery_flags(tmp_path: Path) -> None:
    make_inshop(tmp_path, train_items=3, test_items=4, per_item=3)
    train, test = load_benchmark("inshop", tmp_path)
    assert len(train) == 9 and train.is_query is None
    assert len(test) == 12 and set(train.labels).isdisjoint(test.labels)
    assert test.is_query is not None and test.is_gallery is not None
    assert test.is_query.sum() == 4 and test.is_gallery.sum() == 8
    assert (test.is_query ^ test.is_gallery).all()
    queries = [Path(p).name for p, q in zip(test.paths, test.is_query, strict=True) if q]
    assert queries == ["01_1_front.jpg"] * 4
    assert test.class_names[test.labels[0]] == "id_00000004"


@pytest.mark.parametrize("fine", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path: Path, fine: bool) -> None:
    make_cifar(tmp_path, fine=fine, per_batch=4)
    train, test = load_benchmark("cifar100" if fine else "cifar10", tmp_path)
    assert isinstance(train, ArraySplit) and len(train) == 20 and len(test) == 4
    assert len(train.class_names) == (100 if fine else 10)
    # The first red pixel holds the label: pixels and labels stay paired through the reshape.
    for split in (train, test):
        image = np.asarray(split.load(1))
        assert image.shape == (32, 32, 3) and image[0, 0, 0] == split.labels[1]
    expected = list(range(20)) if fine else [i % 10 for i in range(20)]
    assert train.labels.tolist() == expected
    assert test.labels.tolist() == ([7, 7, 8, 8] if fine else [3, 3, 4, 4])


def test_fewshot_csv_base_and_novel(tmp_path: Path) -> None:
    make_fewshot_csv(tmp_path, base=4, val=2, novel=3, per_class=5)
    train, test = load_benchmark("fewshot_csv", tmp_path)
    assert len(train) == 20 and len(test) == 15
    assert len(set(train.labels)) == 4 and len(set(test.labels)) == 3
    assert set(_names(train)).isdisjoint(_names(test))
    assert _names(test)[0] == "n00000006"  # val classes 4-5 are not used
    assert Path(test.paths[0]).name.startswith("n00000006")


def test_omniglot_background_and_evaluation(tmp_path: Path) -> None:
    make_omniglot(tmp_path / "omniglot-py", background=2, evaluation=1, characters=3, drawers=2)
    train, test = load_benchmark("omniglot", tmp_path)
    assert len(train) == 12 and len(test) == 6
    assert len(set(train.labels)) == 6 and len(set(test.labels)) == 3
    assert _names(test)[0] == "Alphabet_e0/character01"
    assert set(train.labels).isdisjoint(test.labels)


def test_load_splits_dispatches_benchmarks(tmp_path: Path) -> None:
    make_sop(tmp_path, classes=4, per_class=2)
    config = config_from_dict({"data": {"dataset": "sop", "root": str(tmp_path)}})
    train, test = load_splits(config.data, seed=0)
    assert len(train) == 4 and len(test) == 4
    with pytest.raises(ConfigError, match="data.dataset=sop needs data.root"):
        config_from_dict({"data": {"dataset": "sop"}})


@pytest.mark.parametrize(
    ("dataset", "build", "remove", "expected"),
    [
        ("cub200", make_cub, "image_class_labels.txt", "image_class_labels.txt' is missing"),
        ("cars196", make_cars, "cars_annos.mat", "cars_annos.mat' is missing"),
        ("sop", make_sop, "Ebay_test.txt", "Ebay_test.txt' is missing"),
        ("inshop", make_inshop, "img", "img' is missing"),
        ("cifar10", make_cifar, "cifar-10-batches-py/data_batch_3", "data_batch_3' is missing"),
        ("fewshot_csv", make_fewshot_csv, "val.csv", "val.csv' is missing"),
        ("omniglot", make_omniglot, "images_evaluation", "images_evaluation' is missing"),
    ],
)
def test_missing_file_is_named(
    tmp_path: Path, dataset: str, build, remove: str, expected: str
) -> None:
    build(tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=expected) as info:
        load_benchmark(dataset, tmp_path)
    assert "published at" in str(info.value) and "\n" not in str(info.value)


def test_missing_root_and_partly_extracted_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'.*nope' does not exist.*images.txt.*published at"):
        load_benchmark("cub200", tmp_path / "nope")
    make_cub(tmp_path, classes=4, per_class=2)
    first = tmp_path / "images" / "002.Bird_2" / "Bird_2_0000.jpg"
    first.unlink()
    (tmp_path / "images" / "004.Bird_4" / "Bird_4_0001.jpg").unlink()
    with pytest.raises(DataError, match=r"2 of 8 images listed in images.txt are missing") as info:
        load_benchmark("cub200", tmp_path)
    assert f"the first is {str(first)!r}" in str(info.value)


@pytest.mark.parametrize("channels", [1, 3])
def test_data_channels_reach_the_benchmark_splits(tmp_path: Path, channels: int) -> None:
    make_cifar(tmp_path / "cifar", per_batch=2)
    make_omniglot(tmp_path / "omniglot", characters=2, drawers=2)
    for dataset, folder in (("cifar10", "cifar"), ("omniglot", "omniglot")):
        raw = {"dataset": dataset, "root": str(tmp_path / folder), "channels": channels}
        train, test = load_splits(config_from_dict({"data": raw}).data, seed=0)
        assert train.load(0).mode == test.load(0).mode == ("L" if channels == 1 else "RGB")


def test_check_data_reads_benchmarks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from supcon.cli import main

    recipe = tmp_path / "r.yaml"
    make_cub(tmp_path / "cub", classes=4, per_class=2)
    recipe.write_text(f"data: {{dataset: cub200, root: {tmp_path / 'cub'}}}\n")
    assert main(["check-data", str(recipe), "--no-progress", "--workers", "1"]) == 0
    assert "8 images checked (4 training, 4 held-out)" in capsys.readouterr().out
    (tmp_path / "cub" / "images" / "003.Bird_3" / "Bird_3_0000.jpg").write_bytes(b"")
    assert main(["check-data", str(recipe), "--no-progress", "--workers", "1"]) == 1
    make_cifar(tmp_path / "cifar", per_batch=2)
    args = ["check-data", str(recipe), "data.dataset=cifar10", f"data.root={tmp_path / 'cifar'}"]
    assert main(args) == 0
    assert "no image files to check" in capsys.readouterr().out
