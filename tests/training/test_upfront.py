"""Config checked up front (YAML 1.2 floats, names, epochs on resume) and the data fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import supcon.training.loop as loop
from supcon.cli import main
from supcon.config import ConfigError, best_metric_choices, config_to_yaml, load_config
from supcon.data.sources import FileSplit
from supcon.training import train
from supcon.training.fingerprint import data_change, data_fingerprint
from supcon.training.preempt import Preempted
from tests.training.helpers import tiny
from tests.training.test_preempt import SignalAtCall


def test_yaml_1_2_floats_in_recipes_and_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 3e-4\n  weight_decay: 1E-2\nloss:\n  temperature: .5\n")
    config = load_config(recipe, ["optim.clip_grad_norm=1e6", "data.color_jitter=+2.5e-1"])
    assert config.optim.lr == float("3e-4") and config.optim.weight_decay == 0.01
    assert config.loss.temperature == 0.5 and config.optim.clip_grad_norm == 1e6
    assert config.data.color_jitter == 0.25
    assert load_config(recipe, ["model.backbone=1e3"]).model.backbone == "1e3"  # str stays str
    for bad in ("train.epochs=1e3", "optim.lr=3e-4x", "optim.lr=e5"):
        with pytest.raises(ConfigError, match=r"must be (int|float)"):
            load_config(recipe, [bad])


def test_bad_names_fail_before_the_data_is_read(tmp_path: Path, capsys) -> None:
    missing = {"dataset": "folder", "root": str(tmp_path / "no-such-folder")}
    cases = {
        "train.best_metric=recal@1": "is not a metric the evaluation reports",
        "eval.ks=[0]": "eval.ks must be",
        "miner.name=topkk": "unknown miner 'topkk'",
        "miner.args={kk: 3}": "unknown argument",
        "sampler.args={k: 3}": "sampler 'random' takes no args",
    }
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"data": missing, "miner": {"name": "none"}}))
    for override, message in cases.items():
        extra = ["miner.name=topk"] if override.startswith("miner.args") else []
        argv = ["train", str(recipe), *extra, override, "--out", str(tmp_path / "run")]
        assert main([*argv, "--no-progress"]) == 2, override
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (override, err)
        assert "no-such-folder" not in err[0]
    assert not (tmp_path / "run").exists()
    balanced = ["sampler.name=m_per_class", "sampler.args={mm: 4}", "--out", str(tmp_path / "r")]
    assert main(["train", str(recipe), *balanced, "--no-progress"]) == 2
    assert "missing argument(s) ['m']" in capsys.readouterr().err


def test_best_metric_choices_are_what_the_evaluation_reports(images: Path, tmp_path: Path):
    metrics = train(tiny(images, train={"epochs": 1}, eval={"ks": [1, 3]}), tmp_path)
    reported = {k for k, v in metrics.items() if isinstance(v, float) and not k.startswith("num")}
    assert reported == set(best_metric_choices((1, 3)))


@pytest.fixture
def stopped(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run on a private copy of the images, stopped by SIGTERM at step 4 (epoch 2 of 2)."""
    data = tmp_path / "images"
    shutil.copytree(images, data)
    monkeypatch.setattr(loop, "build_loss", lambda c, **_: SignalAtCall(4, 15))
    run = tmp_path / "run"
    with pytest.raises(Preempted):
        train(tiny(data), run, progress=False)
    monkeypatch.setattr(loop, "build_loss", lambda c, **_: SignalAtCall(None, 0))
    return run


def resume_error(run: Path, capsys, *args: str) -> str:
    assert main(["train", "--resume", str(run), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_resume_refuses_fewer_epochs_and_accepts_a_fixed_best_metric(stopped: Path, capsys):
    message = resume_error(stopped, capsys, "train.epochs=1")
    assert "train.epochs=1 is fewer than the 2 epoch(s)" in message and "N ≥ 2" in message
    assert "recal@1" in resume_error(stopped, capsys, "train.best_metric=recal@1")
    argv = ["train", "--resume", str(stopped), "train.best_metric=map@r", "train.eval_every=1"]
    assert main([*argv, "--no-progress"]) == 0
    assert (stopped / "checkpoints" / "best.pt").exists()
    assert "best_metric: map@r" in (stopped / "config.yaml").read_text()


def test_resume_refuses_changed_data_unless_allowed(stopped: Path, capsys) -> None:
    data = stopped.parent / "images"
    moved = sorted((data / "class_0").iterdir())[0]
    moved.rename(data / "class_1" / f"moved{moved.suffix}")  # same files, one label changed
    message = resume_error(stopped, capsys)
    assert "cannot resume: the training split's 30 files, labels or sizes differ" in message
    assert "--allow-data-change" in message
    sorted((data / "class_2").iterdir())[0].unlink()
    assert "had 30 items when the checkpoint was written" in resume_error(stopped, capsys)
    assert main(["train", "--resume", str(stopped), "--allow-data-change", "--no-progress"]) == 0
    assert "continuing (--allow-data-change)" in capsys.readouterr().err


def test_fingerprint_follows_files_labels_and_sizes_not_the_root(tmp_path: Path) -> None:
    def split(root: Path, labels=(0, 0, 1)) -> FileSplit:
        paths = tuple(str(root / n) for n in ("a/1.png", "a/2.png", "b/3.png"))
        return FileSplit(paths, np.array(labels), ("a", "b"))

    for root in (tmp_path / "x", tmp_path / "y"):
        for name in ("a/1.png", "a/2.png", "b/3.png"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"12345")
    here, moved = data_fingerprint(split(tmp_path / "x")), data_fingerprint(split(tmp_path / "y"))
    assert here == moved and data_change(here, moved) is None
    assert data_change(here, data_fingerprint(split(tmp_path / "x", (0, 1, 1)))) is not None
    (tmp_path / "x" / "b" / "3.png").write_bytes(b"123456")
    assert data_change(here, data_fingerprint(split(tmp_path / "x"))) is not None
    assert data_change(None, here) is None  # checkpoints from before the fingerprint


def test_fingerprint_of_in_memory_images() -> None:
    from supcon.data.digits import TensorSplit

    images = torch.rand(5, 1, 8, 8)
    base = data_fingerprint(TensorSplit(images, np.arange(5), tuple("abcde")))
    changed = images.clone()
    changed[2, 0, 3, 3] += 1e-3
    assert data_fingerprint(TensorSplit(images.clone(), np.arange(5), tuple("abcde"))) == base
    assert data_fingerprint(TensorSplit(changed, np.arange(5), tuple("abcde"))) != base


def test_recipe_yaml_round_trip_keeps_new_keys(images: Path) -> None:
    config = tiny(images, train={"on_nonfinite": "skip", "max_nonfinite_steps": 3})
    text = config_to_yaml(config)
    assert "on_nonfinite: skip" in text and "max_nonfinite_steps: 3" in text
