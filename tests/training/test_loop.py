"""The loop on tiny data: precision, freezing, best checkpoint, logs, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import supcon.training.setup as run_setup
from supcon import SupConLoss
from supcon.builders import build_model
from supcon.cli import main
from supcon.data import input_channels
from supcon.models import GeM
from supcon.runs import load_run
from supcon.training import TrainingError, train
from supcon.training.checkpoint import load_checkpoint
from supcon.training.monitor import warn_if_collapsed
from tests.images import make_csv_manifest
from tests.training.helpers import HAS_TENSORBOARD, TENSORBOARD_MISSING, rows, tiny


def test_bf16_channels_last_and_clipping_train_with_finite_losses(
    images: Path, tmp_path: Path
) -> None:
    config = tiny(
        images,
        train={"precision": "bf16", "channels_last": True, "micro_batch_size": 4},
        optim={"clip_grad_norm": 1.0, "name": "sgd", "lr": 0.05},
    )
    metrics = train(config, tmp_path / "bf16", progress=False)
    log = rows(tmp_path / "bf16" / "log.csv")
    assert len(log) == 2 * (30 // 10)  # 30 training images (25 % held out), batches of 10
    assert all(float(r["grad_norm"]) > 0 for r in log)
    # Against the same run in float32: the first loss (same weights, same batch) to bf16's
    # rounding, later losses and the held-out recall@1 within a margin.
    fp32_config = replace(config, train=replace(config.train, precision="fp32"))
    fp32_metrics = train(fp32_config, tmp_path / "fp32", progress=False)
    fp32_log = rows(tmp_path / "fp32" / "log.csv")
    losses = [float(r["loss"]) for r in log]
    fp32_losses = [float(r["loss"]) for r in fp32_log]
    assert losses[0] == pytest.approx(fp32_losses[0], rel=2e-2)
    assert losses == pytest.approx(fp32_losses, rel=0.2)
    assert abs(metrics["recall@1"] - fp32_metrics["recall@1"]) <= 0.2


def test_fp16_needs_cuda(images: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        train(tiny(images, train={"precision": "fp16", "device": "cpu"}), tmp_path)


def test_frozen_backbone_epochs_then_training(images: Path, tmp_path: Path) -> None:
    config = tiny(
        images,
        train={"epochs": 2, "eval_every": 1},
        optim={"freeze_backbone_epochs": 1, "backbone_lr": 0.01},
    )
    train(config, tmp_path, progress=False)
    torch.manual_seed(config.train.seed)
    initial = build_model(config.model, input_channels(config.data)).state_dict()
    after_epoch_1 = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert after_epoch_1["progress"]["epoch"] == 1  # evaluated (first best) after epoch 1
    final = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    for name, tensor in initial.items():
        if name.startswith("backbone."):  # weights and BatchNorm statistics untouched
            assert torch.equal(after_epoch_1["model"][name], tensor), name
    backbone_weights = [n for n in initial if n.startswith("backbone.") and n.endswith("weight")]
    assert all(not torch.equal(final[n], initial[n]) for n in backbone_weights)
    assert not torch.equal(after_epoch_1["model"]["head.0.weight"], initial["head.0.weight"])
    log = rows(tmp_path / "log.csv")
    assert {r["backbone_lr"] for r in log[:3]} == {"0"} and float(log[-1]["backbone_lr"]) > 0


def test_best_checkpoint_eval_log_and_tensorboard(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tiny(images, train={"epochs": 3, "eval_every": 1, "tensorboard": True})
    metrics = train(config, tmp_path, progress=False)
    evals = rows(tmp_path / "eval.csv")
    assert [int(r["epoch"]) for r in evals] == [1, 2, 3]
    assert float(evals[-1]["recall@1"]) == pytest.approx(metrics["recall@1"])
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    best_value = max(float(r["recall@1"]) for r in evals)
    assert best["metrics"]["recall@1"] == pytest.approx(best_value)
    assert best["progress"]["best_value"] == pytest.approx(best_value)
    if HAS_TENSORBOARD:
        assert any((tmp_path / "tensorboard").iterdir())
    else:  # said, not silently skipped
        assert not (tmp_path / "tensorboard").exists()
        assert capsys.readouterr().err.count(TENSORBOARD_MISSING) == 1


def test_string_labels_are_mapped_and_saved(tmp_path: Path) -> None:
    manifest = make_csv_manifest(tmp_path / "data", classes=3, per_class=8)
    config = tiny(tmp_path, data={"dataset": "csv", "manifest": str(manifest), "root": None})
    train(config, tmp_path / "run", progress=False)
    classes = json.loads((tmp_path / "run" / "classes.json").read_text())["classes"]
    assert classes == ["kind-a", "kind-b", "kind-c"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["class_names"] == classes


class NanAtStep(SupConLoss):
    def __init__(self, step: int) -> None:
        super().__init__(0.1)
        self.calls, self.step = 0, step

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        loss = super().forward(*args, **kwargs)
        return loss * float("nan") if self.calls == self.step else loss


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: NanAtStep(4))
    config = tiny(images, train={"checkpoint_every": 1})
    with pytest.raises(TrainingError, match=r"loss became nan at step 4.*last good checkpoint"):
        train(config, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"batch_size": 64}}, "larger than the training split"),
        ({"train": {"batch_size": 9, "precision": "fp32"}}, None),  # odd sizes are fine
    ],
)
def test_batch_size_the_sampler_cannot_form(
    images: Path, tmp_path: Path, overrides: dict, message: str | None
) -> None:
    config = tiny(images, **overrides)
    if message is None:
        train(config, tmp_path, progress=False)
        return
    with pytest.raises(TrainingError, match=message):
        train(config, tmp_path, progress=False)


def test_m_per_class_sampler_and_miner_are_wired(images: Path, tmp_path: Path) -> None:
    # One view per image: positives come only from the sampler's 5 images per class.
    balanced = tiny(images, data={"views": 1}, sampler={"name": "m_per_class", "args": {"m": 5}})
    train(balanced, tmp_path / "balanced", progress=False)
    assert {r["anchors_without_positives"] for r in rows(tmp_path / "balanced" / "log.csv")} == {
        "0"
    }
    mined = tiny(images, miner={"name": "topk", "args": {"k": 2}})
    plain = tiny(images)
    train(mined, tmp_path / "mined", progress=False)
    train(plain, tmp_path / "plain", progress=False)
    first = [rows(tmp_path / name / "log.csv")[0]["loss"] for name in ("mined", "plain")]
    assert first[0] != first[1]  # same batch and weights: only the mined pairs differ


def test_a_batch_the_m_per_class_sampler_cannot_form(images: Path, tmp_path: Path) -> None:
    config = tiny(images, sampler={"name": "m_per_class", "args": {"m": 2}})
    with pytest.raises(
        TrainingError, match=r"needs 5 classes per batch, but the training split has 4 "
    ):
        train(config, tmp_path, progress=False)
    odd = tiny(images, sampler={"name": "m_per_class", "args": {"m": 3}})
    with pytest.raises(TrainingError, match="not divisible by m=3"):
        train(odd, tmp_path, progress=False)


def test_the_folder_recipe_runs_on_tiny_images(images: Path, tmp_path: Path, capsys) -> None:
    """``recipes/folder_resnet50.yaml`` as written, shrunk to a tiny backbone and data."""
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "folder_resnet50.yaml"
    shrink = [
        f"data.root={images}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "sampler.args={m: 5}",
        "train.batch_size=10",
        "train.epochs=2",
        "train.eval_every=1",
        "train.threads=1",
        "train.tensorboard=false",
    ]
    assert main(["train", str(recipe), *shrink, "--out", str(tmp_path), "--no-progress"]) == 0
    assert "recall@1" in capsys.readouterr().out
    run = load_run(tmp_path)
    assert run.checkpoint.name == "best.pt" and run.model.embedding == "backbone"
    assert run.model.embedding_dim == 96 and isinstance(run.model.pool, GeM)


def test_diagnostics_every_n_steps(images: Path, tmp_path: Path, capsys) -> None:
    train(tiny(images, train={"diagnostics_every": 2}), tmp_path, progress=False)
    diagnostics = rows(tmp_path / "diagnostics.csv")
    assert [int(r["step"]) for r in diagnostics] == [2, 4, 6]
    for row in diagnostics:
        lower, loss, upper = (
            float(row[k]) for k in ("loss_lower_bound", "loss", "loss_upper_bound")
        )
        assert lower <= loss <= upper
        assert -4.0 <= float(row["uniformity"]) <= 0.0 and float(row["alignment"]) >= 0.0
        assert row["collapsed"] == "False"
    warn_if_collapsed({"collapsed": True, "mean_similarity": 0.97}, step=12)
    assert "collapsing at step 12 (mean pairwise similarity 0.970)" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_with_gradcache_and_unfreezing(images: Path, tmp_path: Path) -> None:
    """``torch.compile`` on the CPU (inductor needs a C++ compiler): minutes, hence slow."""
    runs = {}
    for compiled in (True, False):
        config = tiny(
            images,
            train={"compile": compiled, "micro_batch_size": 5},
            optim={"freeze_backbone_epochs": 1},
        )
        out = tmp_path / f"compile={compiled}"
        runs[compiled] = (train(config, out, progress=False), rows(out / "log.csv"))
    (compiled_metrics, compiled_log), (eager_metrics, eager_log) = runs[True], runs[False]
    # The compiled graph is the same computation: the same losses step by step (up to the
    # fused kernels' rounding) and so the same retrieval at the end.
    assert [r["step"] for r in compiled_log] == [r["step"] for r in eager_log]
    for got, want in zip(compiled_log, eager_log, strict=True):
        assert float(got["loss"]) == pytest.approx(float(want["loss"]), rel=1e-3)
    assert compiled_metrics["recall@1"] == pytest.approx(eager_metrics["recall@1"], abs=0.05)
