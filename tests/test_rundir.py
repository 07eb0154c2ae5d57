"""A run directory is spelled once (:mod:`supcon.rundir`) and every reader finds what
``supcon train`` wrote through it."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import yaml

from supcon import rundir
from supcon.cli import main
from supcon.commands.train import _check_resume_epochs, _resume_config
from supcon.config import config_to_dict
from supcon.errors import UserError
from supcon.outputs import check_run_folder, run_inputs
from supcon.rundir import RunDir
from supcon.runs import find_checkpoint, load_run
from supcon.training.checkpoint import load_checkpoint, load_checkpoint_or_previous
from supcon.training.lock import hold_lock
from tests.images import make_image_folder

PACKAGE = Path(__file__).resolve().parents[1] / "supcon"
#: File names of a run directory ("tensorboard" is also a logger's name, so it is left out).
NAMES = {
    value
    for key, value in vars(rundir).items()
    if key.isupper() and isinstance(value, str) and value != rundir.TENSORBOARD
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A 2-epoch run written by ``supcon train`` (evaluated every epoch, so best.pt exists)."""
    tmp = tmp_path_factory.mktemp("rundir")
    images = make_image_folder(tmp / "images", classes=3, per_class=8)
    recipe = tmp / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "folder", "root": str(images), "image_size": 24},
                "model": {"backbone": "test_resnet", "embedding_dim": 8},
                "train": {
                    "epochs": 2,
                    "batch_size": 8,
                    "threads": 1,
                    "eval_every": 1,
                    "tensorboard": False,
                },
                "optim": {"warmup_epochs": 0},
            }
        )
    )
    assert main(["train", str(recipe), "--out", str(tmp / "run"), "--no-progress"]) == 0
    return RunDir(tmp / "run")


def test_train_writes_every_path_of_the_run_directory(run: RunDir) -> None:
    for path in (
        run.config,
        run.meta,
        run.classes,
        run.augment,
        run.metrics,
        run.train_log,
        run.eval_log,
        run.last,
        run.previous,
        run.best,
    ):
        assert path.is_file(), path
    assert not run.lock.exists()  # released
    assert not run.skipped.exists()  # no bad image
    assert run.is_finished() and run.has_checkpoint()
    assert json.loads(run.classes.read_text()) == {"classes": ["class_0", "class_1", "class_2"]}
    assert load_checkpoint(run.last)["epoch"] == 2
    assert load_checkpoint(run.previous)["epoch"] == 1  # rotated by the epoch-2 save
    assert load_checkpoint(run.best)["metrics"].keys() == json.loads(run.metrics.read_text()).keys()


def test_every_reader_finds_the_run_through_rundir(run: RunDir) -> None:
    assert find_checkpoint(run.root) == run.best
    loaded = load_run(run.root)
    assert loaded.checkpoint == run.best
    assert loaded.class_names == ("class_0", "class_1", "class_2")
    assert RunDir.of_checkpoint(loaded.checkpoint) == run
    assert RunDir.of_checkpoint(run.root / "model.pt") is None
    assert set(run_inputs(run.root)) == {
        run.root,
        run.last,
        run.previous,
        run.best,
        run.config,
        run.meta,
        run.classes,
    }
    check_run_folder(run.root)  # recognised as a run (markers), not "a folder of other files"
    saved = yaml.safe_load(run.config.read_text())
    assert config_to_dict(_resume_config(run.root, [])) == saved
    assert load_checkpoint_or_previous(run.last)[1] == run.last
    with pytest.raises(UserError, match="already finished its 2 epochs"):
        _check_resume_epochs(run.root, 2, finished=run.is_finished())
    with hold_lock(run.root, who="test"):
        assert json.loads(run.lock.read_text())["pid"] == os.getpid()
    assert not run.lock.exists()


def test_run_folder_is_recognised_by_each_marker(tmp_path: Path) -> None:
    for name in rundir.MARKERS:
        folder = tmp_path / name.strip(".")
        folder.mkdir()
        if name == rundir.CHECKPOINTS:
            (folder / name).mkdir()
        else:
            (folder / name).write_text("")
        (folder / "notes.txt").write_text("")
        check_run_folder(folder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("")
    with pytest.raises(UserError, match="not a supcon run"):
        check_run_folder(other)


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_run_directory_names_are_spelled_only_in_rundir() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "rundir.py"
        for line, value in _literals(path)
        if value in NAMES
    ]
    assert not found, "use supcon.rundir instead of spelling these:\n" + "\n".join(found)
