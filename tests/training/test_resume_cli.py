"""``supcon train --resume DIR``: allowed and refused overrides, missing and finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from supcon.cli import main
from supcon.config import config_to_yaml
from tests.images import make_image_folder
from tests.training.helpers import tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    images = make_image_folder(root / "images", classes=4, per_class=10)
    recipe = root / "tiny.yaml"
    recipe.write_text(config_to_yaml(tiny(images, train={"epochs": 1})))
    assert main(["train", str(recipe), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


def error_of(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_refuses_overrides_that_change_the_computation(finished: Path, capsys) -> None:
    message = error_of(capsys, ["train", "--resume", str(finished), "loss.temperature=0.5"])
    assert "cannot change loss.temperature when resuming" in message
    assert "train.epochs" in message  # lists what is allowed


def test_finished_run_needs_more_epochs_then_continues(finished: Path, capsys) -> None:
    message = error_of(capsys, ["train", "--resume", str(finished)])
    assert "already finished its 1 epochs" in message
    assert main(["train", "--resume", str(finished), "train.epochs=2", "--no-progress"]) == 0
    assert "recall@1" in capsys.readouterr().out
    assert yaml.safe_load((finished / "config.yaml").read_text())["train"]["epochs"] == 2
    assert json.loads((finished / "metrics.json").read_text())["num_queries"] > 0


def test_nothing_to_resume_and_argument_clashes(tmp_path: Path, capsys) -> None:
    assert "nothing to resume" in error_of(capsys, ["train", "--resume", str(tmp_path)])
    clash = error_of(capsys, ["train", "--resume", str(tmp_path), "--out", str(tmp_path)])
    assert "drop --out" in clash
    recipe = error_of(capsys, ["train", "recipes/digits.yaml", "--resume", str(tmp_path)])
    assert "pass no recipe" in recipe
    assert "pass a recipe" in error_of(capsys, ["train"])


def test_a_new_run_refuses_an_unfinished_run_directory(finished: Path, tmp_path, capsys) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"partial run")
    message = error_of(capsys, ["train", str(finished / "config.yaml"), "--out", str(tmp_path)])
    assert "holds an unfinished run; continue it with supcon train --resume" in message
