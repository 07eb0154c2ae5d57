"""Bad input to ``supcon train``: one line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supcon.cli import main
from supcon.config import config_to_yaml
from tests.images import make_csv_manifest, make_image_folder
from tests.training.helpers import tiny


def folder_with_an_empty_class(root: Path) -> dict:
    make_image_folder(root, classes=2, per_class=4)
    (root / "class_9").mkdir()
    return {"data": {"root": str(root)}}


def empty_folder(root: Path) -> dict:
    root.mkdir()
    return {"data": {"root": str(root)}}


def csv_with_missing_files(root: Path) -> dict:
    manifest = make_csv_manifest(root, classes=2, per_class=4)
    for name in ("0_1.png", "1_2.png"):
        (root / "images" / name).unlink()
    return {"data": {"dataset": "csv", "manifest": str(manifest), "root": None}}


def images_folder(root: Path) -> dict:
    make_image_folder(root, classes=4, per_class=10)
    return {"data": {"root": str(root)}}


CASES = {
    "empty class folder": (folder_with_an_empty_class, {}, r"hold no images \(class_9\)"),
    "no class folders": (empty_folder, {}, "has no class sub-folders"),
    "csv missing files": (csv_with_missing_files, {}, r"2 of 8 images .* are missing"),
    "batch too large": (images_folder, {"train": {"batch_size": 64}}, "larger than the training"),
    "unknown timm model": (images_folder, {"model": {"backbone": "resnet_50"}}, "Did you mean"),
    "fp16 on cpu": (images_folder, {"train": {"precision": "fp16", "device": "cpu"}}, "fp16 needs"),
    "missing weights": (images_folder, {"model": {"weights": "nope.pt"}}, "nope.pt' not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, case: str) -> None:
    make, overrides, message = CASES[case]
    sections = make(tmp_path / "data")
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    config = tiny(tmp_path / "data", **sections)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(config_to_yaml(config))
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("supcon train: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
