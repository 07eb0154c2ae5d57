"""Resume carries everything a run holds besides weights, bit for bit.

Each configuration trains a tiny ResNet on a synthetic image folder (6 steps per epoch) once
uninterrupted and once killed (in-process, see :mod:`tests.training.resume_helpers`) and
resumed; both run directories must then agree on every checkpoint tensor, ``metrics.json``
and every CSV row.

* ``eval_every`` + dropout + stochastic depth + diagnostics: the kill lands after the epoch-2
  evaluation but before its ``last.pt``, so the resumed run starts mid-epoch from an older
  checkpoint, with ``log.csv`` / ``diagnostics.csv`` / ``eval.csv`` rows past it (which must be
  dropped), and must restore the RNG streams (dropout masks) and the best value so far (the
  scripted score falls with every evaluation, so a lost best value would let the worse later
  evaluation overwrite ``best.pt``).
* GradCache (micro-batches) with stochastic depth, and a miner run, each killed mid-epoch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import supcon.training.evaluate as run_evaluate
from supcon.config import Config, apply_overrides, config_from_dict
from supcon.training import train
from supcon.training.checkpoint import load_checkpoint
from supcon.training.logging import RunLog
from tests.training.resume_helpers import assert_same_run, killed_then_resumed

# 48 training images of 4 classes / batch 8 = 6 steps per epoch (16 held out).
RAW = {
    "data": {"dataset": "folder", "image_size": 16, "test_fraction": 0.25},
    "model": {"backbone": "test_resnet", "embedding_dim": 16},
    "train": {
        "epochs": 3,
        "batch_size": 8,
        "threads": 1,
        "tensorboard": False,
        "log_every": 1,
    },
    "optim": {"warmup_epochs": 0},
    "eval": {"ks": [1]},
}
#: The best metric, overwritten by a scripted value (train.best_metric is checked up front,
#: so it must be a metric the evaluation reports).
SCRIPTED = "map@r"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.images import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("data") / "images", classes=4, per_class=16)


def _config(folder: Path, *overrides: str) -> Config:
    raw = {**RAW, "data": {**RAW["data"], "root": str(folder)}}
    return config_from_dict(apply_overrides(raw, overrides))


@pytest.fixture
def scripted_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each evaluation reports ``map@r = 1 / step``: every later evaluation scores worse."""
    last_step = {"step": 0}
    real_train, real_evaluate = RunLog.train, run_evaluate.evaluate

    def train_row(self, row):
        last_step["step"] = int(row["step"])
        return real_train(self, row)

    def evaluate(*args, **kwargs):
        return {**real_evaluate(*args, **kwargs), SCRIPTED: 1.0 / last_step["step"]}

    monkeypatch.setattr(RunLog, "train", train_row)
    monkeypatch.setattr(run_evaluate, "evaluate", evaluate)


def _straight_and_resumed(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_step: int
) -> tuple[Path, Path, dict]:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(config, straight, progress=False)
    start = killed_then_resumed(config, resumed, monkeypatch, kill_step)
    return straight, resumed, start


@pytest.mark.usefixtures("scripted_score")
def test_eval_best_dropout_and_logs_resume_bit_for_bit(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(
        folder,
        "train.eval_every=1",
        "train.checkpoint_every=2",
        "train.diagnostics_every=1",
        f"train.best_metric={SCRIPTED}",
        "model.drop_rate=0.2",
        "model.drop_path_rate=0.2",
    )
    straight, resumed, start = _straight_and_resumed(config, tmp_path, monkeypatch, 12)
    # Killed after the step-12 evaluation, before its last.pt: resumed mid-epoch from step 10
    # with the step-6 evaluation as the best so far.
    assert (start["epoch"], start["batch"], start["step"]) == (1, 4, 10)
    assert (start["best_value"], start["best_step"]) == (1 / 6, 6)
    assert_same_run(resumed, straight)
    best = load_checkpoint(resumed / "checkpoints" / "best.pt")
    assert best["progress"]["step"] == 6 and best["metrics"][SCRIPTED] == 1 / 6
    final = load_checkpoint(resumed / "checkpoints" / "last.pt")["progress"]
    assert (final["best_value"], final["best_step"]) == (1 / 6, 6)


def test_gradcache_with_stochastic_depth_resumes_bit_for_bit(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(
        folder,
        "train.epochs=2",
        "train.micro_batch_size=3",
        "train.checkpoint_every=2",
        "model.drop_path_rate=0.2",
    )
    straight, resumed, start = _straight_and_resumed(config, tmp_path, monkeypatch, 10)
    assert (start["epoch"], start["batch"], start["step"]) == (1, 2, 8)
    assert_same_run(resumed, straight)


def test_miner_run_resumes_bit_for_bit(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(
        folder,
        "train.epochs=2",
        "train.checkpoint_every=2",
        "miner.name=topk",
        "miner.args={k: 4}",
    )
    straight, resumed, start = _straight_and_resumed(config, tmp_path, monkeypatch, 10)
    assert (start["epoch"], start["batch"], start["step"]) == (1, 2, 8)
    assert_same_run(resumed, straight)
